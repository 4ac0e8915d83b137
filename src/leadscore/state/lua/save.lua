-- Write a batch of profiles, each conditional on the version that was read, and set
-- schedule entries; one call per batch (one round trip, one script run).
--
-- A profile is a string whose first 4 bytes are its version, big-endian
-- (state/encoding.py: encode_profile). A profile still in the layout of leadscore 0.1
-- (a hash with the version in field `v`) is replaced by the string, keeping its TTL.
--
-- KEYS     the profile keys of the writes (state/keys.py: profile_key), in order, then
--          the schedule sorted sets the entries below name by position
-- ARGV[1]  the number of writes, W
-- then, per write: the expected version (0: the profile is new), the time to live in ms
--   restarted by this write (0: left as it is), the new value (carrying the next
--   version), the schedule key's position in KEYS (0: none), the profile's member in it
--   and its due time ('' removes it)
-- then, per extra schedule entry (not tied to a write): the key's position in KEYS, the
--   member and the due time ('' removes it)
--
-- Returns one number per write: 1 if applied, 0 if in conflict (someone wrote since the
-- read: nothing of that write, nor its schedule entry, is written).
local function schedule(key, member, at)
  if at == '' then
    redis.call('ZREM', key, member)
  else
    redis.call('ZADD', key, at, member)
  end
end

-- the version of a profile, and whether it is an old-layout hash
local function version_of(key)
  local head = redis.pcall('GETRANGE', key, 0, 3)
  if type(head) == 'table' then
    return tonumber(redis.call('HGET', key, 'v') or '0'), true
  end
  if #head < 4 then
    return 0, false
  end
  return struct.unpack('>I4', head), false
end

local writes = tonumber(ARGV[1])
local results = {}
local a = 2
for i = 1, writes do
  local key = KEYS[i]
  local current, old = version_of(key)
  if current ~= tonumber(ARGV[a]) then
    results[i] = 0
  else
    local ttl = tonumber(ARGV[a + 1])
    if old then
      local left = redis.call('PTTL', key)
      redis.call('DEL', key)
      if ttl == 0 and left > 0 then
        ttl = left
      end
    end
    if ttl > 0 then
      redis.call('SET', key, ARGV[a + 2], 'PX', ttl)
    else
      redis.call('SET', key, ARGV[a + 2], 'KEEPTTL')
    end
    local at = tonumber(ARGV[a + 3])
    if at > 0 then
      schedule(KEYS[at], ARGV[a + 4], ARGV[a + 5])
    end
    results[i] = 1
  end
  a = a + 6
end
while a <= #ARGV do
  schedule(KEYS[tonumber(ARGV[a])], ARGV[a + 1], ARGV[a + 2])
  a = a + 3
end
return results
