-- read: the committed state, unless the caller's cached copy is still current.
-- KEYS[1] meta   KEYS[2] state   KEYS[3] (optional) the serve-cache hash
-- ARGV[1] version the caller holds ('' for none)   ARGV[2] (with KEYS[3]) the cache field
-- Returns {} if the instance does not exist; {version, 1, cached} if ARGV[1] is
-- current (cached: the serve-cache entry, or false); else {version, 0, field1,
-- value1, ...}.
local version = redis.call('HGET', KEYS[1], 'version')
if not version then
  return {}
end
if version == ARGV[1] then
  if KEYS[3] then
    return {version, 1, redis.call('HGET', KEYS[3], ARGV[2])}
  end
  return {version, 1}
end
local out = redis.call('HGETALL', KEYS[2])
table.insert(out, 1, 0)
table.insert(out, 1, version)
return out
