-- read: the committed state, unless the caller's cached copy is still current.
-- KEYS[1] meta   KEYS[2] state   KEYS[3] (optional) the serve-cache hash, or, with
-- ARGV[3], the creation claim
-- ARGV[1] version tag the caller holds ('' for none)   ARGV[2] with the cache hash:
-- the cache field; with ARGV[3]: a claim token, and ARGV[3] how many ms to claim the
-- creation for when the instance does not exist
-- Returns {} if the instance does not exist (with a claim: the caller now holds it,
-- so it runs init_state and the init script); {0} if it does not exist and another
-- caller holds the claim (it is running init_state: read again soon); {tag, 1, cached}
-- if ARGV[1] is current (cached: the serve-cache entry, or false); else {tag, 0,
-- field1, value1, ...}.
local tag = redis.call('HGET', KEYS[1], 'tag')
if not tag then
  if ARGV[3] and not redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
    if redis.call('GET', KEYS[3]) ~= ARGV[2] then
      return {0}
    end
  end
  return {}
end
if tag == ARGV[1] then
  if KEYS[3] and not ARGV[3] then
    return {tag, 1, redis.call('HGET', KEYS[3], ARGV[2])}
  end
  return {tag, 1}
end
local out = redis.call('HGETALL', KEYS[2])
table.insert(out, 1, 0)
table.insert(out, 1, tag)
return out
