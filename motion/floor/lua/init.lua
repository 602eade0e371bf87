#!lua
-- init: create an instance with its initial state, once (racing callers create it once).
-- KEYS[1] meta   KEYS[2] state   KEYS[3] motion:components   KEYS[4] the creation claim
-- KEYS[5] (optional) motion:names:{<component>}, the component's index of instance ids
-- ARGV[1] component   ARGV[2] now (ms)   ARGV[3] the new incarnation id (random, 32 hex
-- digits: never repeats, so nothing of an earlier life of this name is taken for this one)
-- ARGV[4] the first version (1; a dev copy starts at the version it copied + 1)
-- ARGV[5..] field, value pairs of the state
-- An instance made before incarnations existed (no tag) gets ARGV[3] as its id.
-- Returns {1, tag} if this call created the instance, {0, tag} if it existed already
-- (tag: the version tag "<version>.<incarnation>[.<nonce>]" caches compare).
-- Not flagged allow-oom: refused at maxmemory before it starts.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local m = redis.call('HMGET', KEYS[1], 'tag', 'version')
  if not m[1] and m[2] then
    -- created before incarnations existed: it gets one now, in place
    m[1] = m[2] .. '.' .. ARGV[3]
    redis.call('HSET', KEYS[1], 'inc', ARGV[3], 'tag', m[1])
  end
  return {0, m[1]}
end
redis.call('DEL', KEYS[2])
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
local tag = ARGV[4] .. '.' .. ARGV[3]
redis.call('HSET', KEYS[1], 'version', ARGV[4], 'seq', 0, 'applied', 0, 'fence', 0,
  'created', ARGV[2], 'inc', ARGV[3], 'tag', tag)
redis.call('SADD', KEYS[3], ARGV[1])
if KEYS[5] then
  -- the id: KEYS[1] is motion:{<component>__<id>}:meta
  local name = string.sub(KEYS[1], #'motion:{' + 1, -#'}:meta' - 1)
  redis.call('ZADD', KEYS[5], 0, string.sub(name, #ARGV[1] + 3))
end
redis.call('DEL', KEYS[4])
return {1, tag}
