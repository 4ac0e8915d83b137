-- Write a batch of profiles, each conditional on the version that was read, and set
-- schedule entries; one call per batch (one round trip, one script run).
--
-- KEYS     the profile hashes of the writes (state/keys.py: profile_key), in order,
--          then the schedule sorted sets the entries below name by position
-- ARGV[1]  the number of writes, W
-- then, per write:
--   expected version (0: the profile is new), encoded state, time to live in ms
--   restarted by this write (0: left as it is), the number F of field/value pairs that
--   follow (watermarks, kept outputs, pending outputs, schedule partition; an empty
--   value deletes the field), the schedule key's position in KEYS (0: none), the
--   profile's member in it and its due time ('' removes it), then the F pairs
-- then, per extra schedule entry (not tied to a write): the key's position in KEYS,
--   the member and the due time ('' removes it)
--
-- Returns one number per write: the new version if applied, 0 if in conflict (someone
-- wrote since the read: nothing of that write, nor its schedule entry, is written).
local function schedule(key, member, at)
  if at == '' then
    redis.call('ZREM', key, member)
  else
    redis.call('ZADD', key, at, member)
  end
end

local writes = tonumber(ARGV[1])
local results = {}
local a = 2
for i = 1, writes do
  local key = KEYS[i]
  local expected = tonumber(ARGV[a])
  local fields = tonumber(ARGV[a + 3])
  local current = tonumber(redis.call('HGET', key, 'v') or '0')
  if current ~= expected then
    results[i] = 0
  else
    local version = current + 1
    local set = {'v', version, 's', ARGV[a + 1]}
    local first = a + 7
    for j = first, first + 2 * fields - 1, 2 do
      if ARGV[j + 1] == '' then
        redis.call('HDEL', key, ARGV[j])
      else
        set[#set + 1] = ARGV[j]
        set[#set + 1] = ARGV[j + 1]
      end
    end
    redis.call('HSET', key, unpack(set))
    local ttl = tonumber(ARGV[a + 2])
    if ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
    end
    local at = tonumber(ARGV[a + 4])
    if at > 0 then
      schedule(KEYS[at], ARGV[a + 5], ARGV[a + 6])
    end
    results[i] = version
  end
  a = a + 7 + 2 * fields
end
while a <= #ARGV do
  schedule(KEYS[tonumber(ARGV[a])], ARGV[a + 1], ARGV[a + 2])
  a = a + 3
end
return results
