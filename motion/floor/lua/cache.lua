-- cache: store a serve-cache entry, only while the state is still at the entry's
-- version (an entry computed before a commit landed would outlive the commit's DEL).
-- KEYS[1] meta   KEYS[2] the serve-cache hash
-- ARGV[1] the version tag the serve op ran on   ARGV[2] field   ARGV[3] entry
-- ARGV[4] ttl (s): the hash expires this long after its last write
-- Returns 1 if stored, 0 if the version moved on (nothing stored).
if redis.call('HGET', KEYS[1], 'tag') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
