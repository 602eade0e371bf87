-- heartbeat: a worker announces that it can apply a component's updates.
-- KEYS[1] motion:workers:{<Component>} (zset: worker id -> ms time last seen, Redis' clock)
-- KEYS[2] motion:registered:{<Component>} (string, never expires: a worker ever announced it)
-- ARGV[1] worker id   ARGV[2] forget members (and the key) silent for this many ms
-- ARGV[3] '1' to say goodbye instead (a worker stopping)
-- Returns Redis' time in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return now
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('SET', KEYS[2], now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return now
