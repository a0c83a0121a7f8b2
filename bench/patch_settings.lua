-- wrk script: authenticated PATCH /rooms/{id}/settings on random rooms among pre-created ones,
-- each setting maxParticipants to a random value in 2..100 (so about 1 request in 99 keeps the
-- current value: the service answers it without appending an event). Prints a JSON summary line
-- at the end, in the format of create_room.lua.
-- The token comes from BENCH_TOKEN (its `sub` hosts the rooms), the room ids from the file
-- BENCH_ROOMS_FILE, one per line.
local token = os.getenv("BENCH_TOKEN")
local rooms_file = os.getenv("BENCH_ROOMS_FILE")

local rooms = {}
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer " .. token,
}

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
  if #rooms == 0 then error("no room ids in " .. rooms_file) end
  -- Each thread has its own Lua state: seed each differently, or all would patch alike.
  math.randomseed(os.time() * 1000 + thread_number)
end

function request()
  local id = rooms[math.random(#rooms)]
  local body = string.format('{"maxParticipants": %d}', math.random(2, 100))
  return wrk.format("PATCH", "/rooms/" .. id .. "/settings", headers, body)
end

function response(status, headers, body)
  if status == 200 then
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
    'BENCH_JSON {"requests": %d, "duration_us": %d, "ok": %d, "non_200": %d, ' ..
    '"non_200_by_status": {%s}, "socket_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, ok_total, others_total, table.concat(parts, ", "),
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
