-- sweep: re-wake instances that stayed pending with no lease holder.
-- KEYS[2i-1] meta of candidate i   KEYS[2i] lease of candidate i   KEYS[#KEYS] motion:pending
-- ARGV[1] now (ms)   ARGV[i+1] name of candidate i
-- Returns the names to send a wake-up for. Busy instances are looked at again one
-- grace period later; instances with nothing left (or deleted) leave the index.
local pending = KEYS[#KEYS]
local out = {}
for i = 1, #ARGV - 1 do
  local meta = KEYS[2 * i - 1]
  local lease = KEYS[2 * i]
  local name = ARGV[i + 1]
  if redis.call('EXISTS', lease) == 1 then
    redis.call('ZADD', pending, 'XX', ARGV[1], name)
  else
    local m = redis.call('HMGET', meta, 'applied', 'seq')
    if not m[2] or tonumber(m[1] or '0') >= tonumber(m[2]) then
      redis.call('ZREM', pending, name)
      if m[2] then
        redis.call('HDEL', meta, 'holder')
      end
    else
      redis.call('HSET', meta, 'wake', ARGV[1])
      redis.call('ZADD', pending, 'XX', ARGV[1], name)
      out[#out + 1] = name
    end
  end
end
return out
