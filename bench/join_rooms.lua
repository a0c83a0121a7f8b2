-- wrk script: POST /rooms/code/{code}/join by signed-in users, each request a different user,
-- on random rooms among pre-created ones. Prints a JSON summary line at the end (tally.lua; `ok`
-- counts the 201s).
-- The room codes come from the file BENCH_ROOMS_FILE, the user tokens (one user each, minted by
-- bench.py) from BENCH_TOKENS_FILE, one per line. Thread t of BENCH_THREADS takes the tokens
-- t, t + BENCH_THREADS, ... in order, so no two requests carry the same user; when a thread has
-- used all of its tokens it starts again from its first (a user joining a second room, or,
-- rarely, the same room again: 200), and counts that in `token_wraps`.
local rooms_file = os.getenv("BENCH_ROOMS_FILE")
local tokens_file = os.getenv("BENCH_TOKENS_FILE")
local thread_count = tonumber(os.getenv("BENCH_THREADS"))

local rooms = {}
local tokens = {}
local next_token = 1

wraps = 0
expected = 201
dofile(os.getenv("BENCH_LUA_DIR") .. "/tally.lua")

-- The summary's `token_wraps`: how often a thread started its tokens again.
function more_fields(threads)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("wraps")
  end
  return string.format('"token_wraps": %d, ', total)
end

function init(args)
  for line in io.lines(rooms_file) do
    if line ~= "" then table.insert(rooms, line) end
  end
  if #rooms == 0 then error("no room codes in " .. rooms_file) end
  local i = 0
  for line in io.lines(tokens_file) do
    if line ~= "" then
      if i % thread_count == thread_number - 1 then table.insert(tokens, "Bearer " .. line) end
      i = i + 1
    end
  end
  if #tokens == 0 then error("no tokens for thread " .. thread_number .. " in " .. tokens_file) end
  -- Each thread has its own Lua state: seed each differently, or all would join alike.
  math.randomseed(os.time() * 1000 + thread_number)
end

function request()
  if next_token > #tokens then
    next_token = 1
    wraps = wraps + 1
  end
  local token = tokens[next_token]
  next_token = next_token + 1
  local code = rooms[math.random(#rooms)]
  return wrk.format("POST", "/rooms/code/" .. code .. "/join", { ["Authorization"] = token }, nil)
end
