#!lua
-- init: create an instance with its initial state, once (racing callers create it once).
-- KEYS[1] meta   KEYS[2] state   KEYS[3] motion:components
-- ARGV[1] component   ARGV[2] now (ms)   ARGV[3..] field, value pairs of the state
-- Not flagged allow-oom: refused at maxmemory before it starts.
-- Returns 1 if this call created the instance, 0 if it existed already.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('DEL', KEYS[2])
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'version', 1, 'seq', 0, 'applied', 0, 'fence', 0, 'created', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
