-- wrk script: POST /rooms/code/{code}/join by guests (no token), each request from a random
-- address of 10.0.0.0/8 named in X-Forwarded-For (the service trusts 127.0.0.1, wrk, as its
-- load balancer: TRUSTED_PROXIES=127.0.0.1/32), on random rooms among the codes of
-- BENCH_ROOMS_FILE. So every guest join goes through the per-address and per-room limits
-- without hitting them. Prints a JSON summary line like join_rooms.lua (`ok` counts the 201s).
local rooms_file = os.getenv("BENCH_ROOMS_FILE")

local rooms = {}
ok = 0
others = 0
statuses = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  for line in io.lines(rooms_file) do
    if line ~= "" then table.insert(rooms, line) end
  end
  if #rooms == 0 then error("no room codes in " .. rooms_file) end
  math.randomseed(os.time() * 1000 + thread_number)
end

function request()
  local code = rooms[math.random(#rooms)]
  local from = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  return wrk.format("POST", "/rooms/code/" .. code .. "/join",
    { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = from },
    '{"displayName": "Bench guest"}')
end

function response(status, headers, body)
  if status == 201 then
    ok = ok + 1
  else
    others = others + 1
    statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
  end
end

function done(summary, latency, requests)
  local ok_total, others_total, by_status = 0, 0, {}
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("ok")
    others_total = others_total + thread:get("others")
    for status, count in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(by_status) do
    table.insert(parts, string.format('"%s": %d', status, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "ok": %d, "non_201": %d, ' ..
    '"non_201_by_status": {%s}, "socket_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, ok_total, others_total, table.concat(parts, ", "),
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
