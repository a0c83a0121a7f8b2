-- wrk script: POST /rooms/code/{code}/join by guests (no token), each request from a random
-- address of 10.0.0.0/8 named in X-Forwarded-For (the service trusts 127.0.0.1, wrk, as its
-- load balancer: TRUSTED_PROXIES=127.0.0.1/32), on random rooms among the codes of
-- BENCH_ROOMS_FILE. So every guest join goes through the per-address and per-room limits
-- without hitting them. Prints a JSON summary line (tally.lua; `ok` counts the 201s).
local rooms_file = os.getenv("BENCH_ROOMS_FILE")

local rooms = {}
expected = 201
dofile(os.getenv("BENCH_LUA_DIR") .. "/tally.lua")

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
