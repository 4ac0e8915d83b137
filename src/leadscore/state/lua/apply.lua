-- Write one profile's new state, conditional on the version that was read.
--
-- KEYS[1]  the profile hash (state/keys.py: profile_key)
-- ARGV[1]  expected version: the `v` field read before scoring (0: the profile is new)
-- ARGV[2]  the encoded state
-- ARGV[3]  time to live in milliseconds, restarted by this write (0: left as it is)
-- ARGV[4..] pairs of field and value written with the state: one watermark per
--          (topic, partition) applied, the outputs this write caused per partition, the
--          pending outputs of time-driven changes, the schedule partition; an empty value
--          deletes the field
--
-- Returns {status, version}:
--   {1, new version}      applied: state, version and the fields written together
--   {2, current version}  conflict: someone else wrote since the read; nothing written
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return {2, current}
end
local version = current + 1
redis.call('HSET', KEYS[1], 'v', version, 's', ARGV[2])
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {1, version}
