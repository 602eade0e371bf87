-- enqueue: append one update to an instance's inbox and mark the instance pending.
-- KEYS[1] meta   KEYS[2] inbox   KEYS[3] lease   KEYS[4] motion:pending
-- KEYS[5] (optional) the Celery queue list to push a wake-up onto
-- ARGV[1] payload   ARGV[2] flow   ARGV[3] now (ms)   ARGV[4] instance name
-- ARGV[5] (optional) the wake-up task message, pushed onto KEYS[5] if one is needed
-- Returns {seq, wake}: wake = 0 when a worker drains the instance or a wake-up is in
-- flight, 2 when this script pushed the wake-up, 1 when the caller must send it.
-- Returns {0, 0} when the instance does not exist yet (the caller runs init_state
-- and calls again).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0, 0}
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('HSET', KEYS[2], seq, ARGV[1])
redis.call('HSET', KEYS[1], 'last:' .. ARGV[2], seq)
redis.call('HINCRBY', KEYS[1], 'pending:' .. ARGV[2], 1)
local wake = 0
if redis.call('EXISTS', KEYS[3]) == 0 and redis.call('HEXISTS', KEYS[1], 'wake') == 0 then
  redis.call('HSET', KEYS[1], 'wake', ARGV[3])
  wake = 1
  if KEYS[5] then
    -- the message names the seq only now that it is known (\1SEQ\1 placeholder)
    redis.call('LPUSH', KEYS[5], (string.gsub(ARGV[5], '\1SEQ\1', seq)))
    wake = 2
  end
end
redis.call('ZADD', KEYS[4], 'NX', ARGV[3], ARGV[4])
return {seq, wake}
