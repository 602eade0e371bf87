-- acquire: take an instance's lease with a new fencing token.
-- KEYS[1] meta   KEYS[2] lease   KEYS[3] motion:stats:<component>
-- ARGV[1] lease period (ms)
-- Returns the token (> 0), 0 if another worker holds the lease, -1 if the instance
-- does not exist. Either way the wake-up flag is cleared: this wake-up was delivered.
redis.call('HDEL', KEYS[1], 'wake')
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local token = redis.call('HINCRBY', KEYS[1], 'fence', 1)
if redis.call('HEXISTS', KEYS[1], 'holder') == 1 then
  -- the previous holder never released: its lease ran out (crash, pause, partition)
  redis.call('HINCRBY', KEYS[3], 'takeovers', 1)
end
redis.call('SET', KEYS[2], token, 'PX', ARGV[1])
redis.call('HSET', KEYS[1], 'holder', token)
return token
