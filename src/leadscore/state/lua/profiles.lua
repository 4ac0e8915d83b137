-- Write profiles, each conditional on the version that was read. On a Redis Cluster every
-- key of one call lies in one slot (state/store.py groups the writes by slot); on a
-- standalone Redis one call writes a whole batch.
--
-- A profile is a string whose first 4 bytes are its version, big-endian
-- (state/encoding.py: encode_profile).
--
-- KEYS     the profile keys (state/keys.py: profile_key)
-- ARGV     per key, three values: the expected version (0: the profile is new), the time
--          to live in ms restarted by this write (0: left as it is), the new value
--          (carrying the next version)
--
-- Returns one number per key: 1 if written, 0 if in conflict (someone wrote since the
-- read: the profile is left as it is).

-- the version of a profile (0: none)
local function version_of(key)
  local head = redis.call('GETRANGE', key, 0, 3)
  if #head < 4 then
    return 0
  end
  return struct.unpack('>I4', head)
end

local results = {}
for i, key in ipairs(KEYS) do
  local a = 3 * i - 2
  if version_of(key) ~= tonumber(ARGV[a]) then
    results[i] = 0
  else
    local ttl = tonumber(ARGV[a + 1])
    if ttl > 0 then
      redis.call('SET', key, ARGV[a + 2], 'PX', ttl)
    else
      redis.call('SET', key, ARGV[a + 2], 'KEEPTTL')
    end
    results[i] = 1
  end
end
return results
