-- drop: remove one dead letter (its failure record and its kept entry).
-- KEYS[1] failed   KEYS[2] dead
-- ARGV[1] seq
-- Returns 1 if it was a dead letter, 0 if not (never failed, dropped or retried).
local n = redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if n > 0 then
  return 1
end
return 0
