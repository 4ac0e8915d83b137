-- After the outputs of a profile's time-driven changes were acknowledged: forget them,
-- unless the profile was written again since (that writer took them over).
--
-- KEYS[1]  the profile hash (state/keys.py: profile_key)
-- ARGV[1]  the version written together with those outputs
--
-- Returns 1 if the profile is still at that version (the pending outputs are removed and
-- the version moves on, so that a copy cached by a worker is read again), 0 if it moved
-- on (nothing is changed).
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HDEL', KEYS[1], 'p')
redis.call('HSET', KEYS[1], 'v', current + 1)
return 1
