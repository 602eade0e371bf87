-- commit: apply updates first..last to the state, if this worker still holds the lease
-- and they are the next in order. The one place that changes committed state.
-- KEYS[1] meta   KEYS[2] state   KEYS[3] inbox   KEYS[4] lease   KEYS[5] failed
-- KEYS[6] motion:stats:<component>
-- ARGV[1] token   ARGV[2] first seq   ARGV[3] last seq   ARGV[4] lease period (ms)
-- ARGV[5] now (ms)   ARGV[6] 1 to replace the whole state (a migration), else 0
-- ARGV[7] how many state changes the version advances by (one per update that changed it)
-- then four counted lists, each "n, then n pairs":
--   state fields (field, value) | stats counters (field, increment)
--   meta counters (field, increment) | failure records (seq, json)
-- Returns the new version, -1 if the lease is lost (a zombie's commit), -2 if
-- first seq is not applied + 1 (already applied: a duplicate).
if redis.call('GET', KEYS[4]) ~= ARGV[1] then
  return -1
end
local applied = tonumber(redis.call('HGET', KEYS[1], 'applied') or '0')
if applied + 1 ~= tonumber(ARGV[2]) then
  return -2
end
if ARGV[6] == '1' then
  redis.call('DEL', KEYS[2])
end
if ARGV[7] ~= '0' then
  redis.call('HINCRBY', KEYS[1], 'version', ARGV[7])
end
local i = 8
local n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HINCRBY', KEYS[6], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HINCRBY', KEYS[1], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('ZADD', KEYS[5], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
if n > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -1001)
end
for s = tonumber(ARGV[2]), tonumber(ARGV[3]) do
  redis.call('HDEL', KEYS[3], s)
end
redis.call('HSET', KEYS[1], 'applied', ARGV[3], 'applied_at', ARGV[5])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return tonumber(redis.call('HGET', KEYS[1], 'version'))
