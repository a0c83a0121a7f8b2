-- wrk script: authenticated POST /rooms; prints a JSON summary line at the end.
-- The token comes from the environment (BENCH_TOKEN).
wrk.method = "POST"
wrk.body = '{"name": "Bench room", "maxParticipants": 10}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")

created = 0
others = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status == 201 then created = created + 1 else others = others + 1 end
end

function done(summary, latency, requests)
  local created_total, others_total = 0, 0
  for _, thread in ipairs(threads) do
    created_total = created_total + thread:get("created")
    others_total = others_total + thread:get("others")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "created": %d, "non_201": %d, ' ..
    '"socket_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, created_total, others_total,
    e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
