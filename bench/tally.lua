-- Shared by the wrk scripts that count answers by status (join_rooms.lua, join_guests.lua,
-- patch_settings.lua), loaded with dofile from BENCH_LUA_DIR (bench.py sets it): the counters
-- each thread keeps, setup, response, and the BENCH_JSON summary line at the end.
-- The script sets `expected` (the status counted in `ok`; any other is counted by status in
-- `non_<expected>_by_status`) before loading this, and may define `more_fields(threads)`,
-- returning more JSON fields for the summary, each followed by ", ".
ok = 0
others = 0
statuses = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

function response(status, headers, body)
  if status == expected then
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
    'BENCH_JSON {"requests": %d, "duration_us": %d, "ok": %d, "non_%d": %d, ' ..
    '"non_%d_by_status": {%s}, %s"socket_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, ok_total, expected, others_total, expected,
    table.concat(parts, ", "), more_fields and more_fields(threads) or "",
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
