-- wrk script: an enumerator. GET /rooms/code/{code} with a random well-formed code each time
-- (nine random letters: practically never a room), at full speed, all from one address.
-- Counts the 404s (each one a lookup that reached the database), the 429s (refused before it)
-- and the rest; prints a JSON summary line at the end.
local letters = "abcdefghijklmnopqrstuvwxyz"
local threads = {}
not_found = 0
refused = 0
others = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_number)
end

local function letter()
  local i = math.random(1, 26)
  return letters:sub(i, i)
end

function request()
  local code = letter() .. letter() .. letter() .. "-" .. letter() .. letter() .. letter() .. "-" ..
    letter() .. letter() .. letter()
  return wrk.format("GET", "/rooms/code/" .. code)
end

function response(status, headers, body)
  if status == 404 then
    not_found = not_found + 1
  elseif status == 429 then
    refused = refused + 1
  else
    others = others + 1
  end
end

function done(summary, latency, requests)
  local not_found_total, refused_total, others_total = 0, 0, 0
  for _, thread in ipairs(threads) do
    not_found_total = not_found_total + thread:get("not_found")
    refused_total = refused_total + thread:get("refused")
    others_total = others_total + thread:get("others")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "not_found": %d, "refused": %d, "others": %d, ' ..
    '"socket_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, not_found_total, refused_total, others_total,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
