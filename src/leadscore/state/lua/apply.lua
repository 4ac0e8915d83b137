-- Write one profile's new state, conditional on the version that was read.
--
-- KEYS[1]  the profile hash (state/keys.py: profile_key)
-- ARGV[1]  expected version: the `v` field read before scoring (0: the profile is new)
-- ARGV[2]  the encoded state
-- ARGV[3]  time to live in milliseconds (0: never expires)
-- ARGV[4..] pairs of watermark field and offset, one per (topic, partition) applied
--
-- Returns {status, version}:
--   {1, new version}      applied: state, version and watermarks written together
--   {2, current version}  conflict: someone else wrote since the read; nothing written
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return {2, current}
end
local version = current + 1
redis.call('HSET', KEYS[1], 'v', version, 's', ARGV[2], unpack(ARGV, 4))
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {1, version}
