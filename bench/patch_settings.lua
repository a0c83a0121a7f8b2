-- wrk script: authenticated PATCH /rooms/{id}/settings on random rooms among pre-created ones,
-- each setting maxParticipants to a random value in 2..100 (so about 1 request in 99 keeps the
-- current value: the service answers it without appending an event). Prints a JSON summary line
-- at the end (tally.lua; `ok` counts the 200s).
-- The token comes from BENCH_TOKEN (its `sub` hosts the rooms), the room ids from the file
-- BENCH_ROOMS_FILE, one per line.
local token = os.getenv("BENCH_TOKEN")
local rooms_file = os.getenv("BENCH_ROOMS_FILE")

local rooms = {}
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = "Bearer " .. token,
}

expected = 200
dofile(os.getenv("BENCH_LUA_DIR") .. "/tally.lua")

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
