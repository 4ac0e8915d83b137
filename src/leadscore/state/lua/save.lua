-- Write a batch of profiles, each conditional on the version that was read, with their
-- schedule entries and kept outputs; set other schedule entries; drop kept outputs that
-- were published. One call per batch (one round trip, one script run).
--
-- A profile is a string whose first 4 bytes are its version, big-endian
-- (state/encoding.py: encode_profile).
--
-- KEYS     the profile keys of the writes (state/keys.py: profile_key), in order, then
--          the schedule sorted sets and kept-output hashes named below by position
-- ARGV[1]  the number of writes, W;  ARGV[2]  the time to live of a kept-output hash (ms);
-- ARGV[3]  the field this call's kept outputs go to, in each partition's hash
-- then, per write: the expected version (0: the profile is new), the time to live in ms
--   restarted by this write (0: left as it is), the new value (carrying the next
--   version), the schedule key's position in KEYS (0: none), the profile's member in it,
--   its due time ('' removes it), the number K of kept entries, then K pairs: the kept
--   hash's position in KEYS and the encoded outputs (they are concatenated per hash)
-- then the number S of extra schedule entries and S triples: the key's position in KEYS,
--   the member and the due time ('' removes it)
-- then pairs to forget: the kept hash's position in KEYS and the field
--
-- Returns one number per write: 1 if applied, 0 if in conflict (someone wrote since the
-- read: nothing of that write, nor its schedule entry or kept outputs, is written).
local CHUNK = 1000  -- fields per HDEL: unpack() has a limit

local function schedule(key, member, at)
  if at == '' then
    redis.call('ZREM', key, member)
  else
    redis.call('ZADD', key, at, member)
  end
end

-- the version of a profile (0: none)
local function version_of(key)
  local head = redis.call('GETRANGE', key, 0, 3)
  if #head < 4 then
    return 0
  end
  return struct.unpack('>I4', head)
end

local function each_chunk(command, key, items)
  for first = 1, #items, CHUNK do
    redis.call(command, key, unpack(items, first, math.min(first + CHUNK - 1, #items)))
  end
end

local writes = tonumber(ARGV[1])
local kept_ttl = tonumber(ARGV[2])
local kept_field = ARGV[3]
local results = {}
local kept = {}  -- position in KEYS -> {encoded outputs, ...}
local a = 4
for i = 1, writes do
  local key = KEYS[i]
  local current = version_of(key)
  local entries = tonumber(ARGV[a + 6])
  if current ~= tonumber(ARGV[a]) then
    results[i] = 0
  else
    local ttl = tonumber(ARGV[a + 1])
    if ttl > 0 then
      redis.call('SET', key, ARGV[a + 2], 'PX', ttl)
    else
      redis.call('SET', key, ARGV[a + 2], 'KEEPTTL')
    end
    local at = tonumber(ARGV[a + 3])
    if at > 0 then
      schedule(KEYS[at], ARGV[a + 4], ARGV[a + 5])
    end
    for j = a + 7, a + 5 + 2 * entries, 2 do
      local position = tonumber(ARGV[j])
      local blobs = kept[position]
      if blobs == nil then
        blobs = {}
        kept[position] = blobs
      end
      blobs[#blobs + 1] = ARGV[j + 1]
    end
    results[i] = 1
  end
  a = a + 7 + 2 * entries
end
for position, blobs in pairs(kept) do
  redis.call('HSET', KEYS[position], kept_field, table.concat(blobs))
  redis.call('PEXPIRE', KEYS[position], kept_ttl)
end
local extra = tonumber(ARGV[a])
a = a + 1
for _ = 1, extra do
  schedule(KEYS[tonumber(ARGV[a])], ARGV[a + 1], ARGV[a + 2])
  a = a + 3
end
local forget = {}
while a <= #ARGV do
  local position = tonumber(ARGV[a])
  forget[position] = forget[position] or {}
  table.insert(forget[position], ARGV[a + 1])
  a = a + 2
end
for position, fields in pairs(forget) do
  each_chunk('HDEL', KEYS[position], fields)
end
return results
