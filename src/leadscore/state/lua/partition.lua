-- Everything a batch writes about one input partition, in one slot (the keys are tagged
-- by partition): the outputs it keeps for a replay, the kept outputs it forgets, the
-- progress marker and the partition's schedule entries. Runs before the batch's profile
-- writes (state/store.py): a crash between the two leaves only outputs no profile points
-- to and schedule entries the sweep checks against the profiles.
--
-- KEYS[1]  the kept-output hash (state/keys.py: kept_key)
-- KEYS[2]  the schedule sorted set (schedule_key)
-- KEYS[3]  the progress marker (progress_key)
-- ARGV[1]  the kept hash's time to live (ms)
-- ARGV[2]  the field this call's outputs go to (the write token of the profiles written)
-- ARGV[3]  the encoded outputs to keep ('' keeps none)
-- ARGV[4]  the batch's next offset in the partition ('' leaves the marker)
-- ARGV[5]  the least the marker must be already ('' checks nothing): what the worker
--          knows was written; below it, Redis lost data, and nothing is written
-- ARGV[6]  the number F of fields to forget, then F field names
-- then pairs: a schedule member and its due time ('' removes it)
--
-- The marker only grows (a worker that lost the partition may still finish a batch of
-- older offsets), and is written on every call, so that a WAIT after it covers every
-- earlier write on this Redis.
local CHUNK = 1000  -- fields per HDEL: unpack() has a limit

-- offsets compared as decimal strings: a Lua number is exact only up to 2^53
local function greater(a, b)
  return #a > #b or (#a == #b and a > b)
end
local marker = redis.call('GET', KEYS[3]) or '0'
if ARGV[5] ~= '' and greater(ARGV[5], marker) then
  return redis.error_reply('STATELOST ' .. KEYS[3] .. ' is at ' .. marker .. ', below ' .. ARGV[5])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
end
local forget = tonumber(ARGV[6])
for first = 7, 6 + forget, CHUNK do
  redis.call('HDEL', KEYS[1], unpack(ARGV, first, math.min(first + CHUNK - 1, 6 + forget)))
end
if ARGV[4] ~= '' and greater(ARGV[4], marker) then
  marker = ARGV[4]
end
redis.call('SET', KEYS[3], marker)
for a = 7 + forget, #ARGV, 2 do
  if ARGV[a + 1] == '' then
    redis.call('ZREM', KEYS[2], ARGV[a])
  else
    redis.call('ZADD', KEYS[2], ARGV[a + 1], ARGV[a])
  end
end
return marker
