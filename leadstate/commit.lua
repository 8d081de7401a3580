-- Stores one subject's new scoring state if it is still the one the caller
-- computed it from, recording the event ids it applied and its new MQL
-- records. Every key is the subject's (one hash tag, one Cluster slot).
--
-- KEYS[1] = state, KEYS[2] = outbox, KEYS[3..] = dedup bucket sets
-- ARGV[1] = expected version (8 bytes; '' = the state must not exist)
-- ARGV[2] = new value (its version, then the encoded state)
-- ARGV[3] = state expiry, Unix ms ('0' = never)
-- then per dedup key: expiry (Unix ms), n, n ids
-- then n outbox entries, then n (mql_id, record) pairs
-- Returns {1}, {0, current value or nil} when the state changed meanwhile,
-- or {2, ids} when ids were applied already (then nothing is written).

-- The version alone is read (GETRANGE: '' when the key does not exist); the
-- whole value only on a conflict, for the caller to plan again from.
if redis.call('GETRANGE', KEYS[1], 0, 7) ~= ARGV[1] then return {0, redis.call('GET', KEYS[1])} end

local i = 4
local dups
for k = 3, #KEYS do
  local n = tonumber(ARGV[i + 1])
  local j = i + 2
  while j <= i + 1 + n do
    local last = math.min(j + 499, i + 1 + n)
    local found = redis.call('SMISMEMBER', KEYS[k], unpack(ARGV, j, last))
    for x = 1, #found do
      if found[x] == 1 then
        dups = dups or {}
        dups[#dups + 1] = ARGV[j + x - 1]
      end
    end
    j = last + 1
  end
  i = i + 2 + n
end
if dups then return {2, dups} end

-- Nothing is written when a write would fail half-way: the state and the
-- dedup sets were type-checked by reading them above; the outbox is checked
-- here, before the state is stored (a script is not undone by its error:
-- the state would be stored with its crossing lost).
if tonumber(ARGV[i]) > 0 then
  local t = redis.call('TYPE', KEYS[2]).ok
  if t ~= 'hash' and t ~= 'none' then
    return redis.error_reply('WRONGTYPE the outbox holds a ' .. t .. ', not a hash')
  end
end

if ARGV[3] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
i = 4
for k = 3, #KEYS do
  local n = tonumber(ARGV[i + 1])
  local j = i + 2
  while j <= i + 1 + n do
    local last = math.min(j + 499, i + 1 + n)
    redis.call('SADD', KEYS[k], unpack(ARGV, j, last))
    j = last + 1
  end
  redis.call('PEXPIREAT', KEYS[k], ARGV[i])
  i = i + 2 + n
end
local no = tonumber(ARGV[i])
if no > 0 then redis.call('HSET', KEYS[2], unpack(ARGV, i + 1, i + 2 * no)) end
return {1}
