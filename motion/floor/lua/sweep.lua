#!lua flags=allow-oom
-- sweep: re-wake instances that stayed pending with no lease holder.
-- KEYS[3i-2] meta of candidate i   KEYS[3i-1] lease of candidate i
-- KEYS[3i] the counter of candidate i's ready list (ready_lib.lua)
-- KEYS[#KEYS-1] motion:pending   KEYS[#KEYS] motion:sweep
-- ARGV[1] unused (now is Redis' clock)   ARGV[2] grace period (ms)   ARGV[i+2] name of candidate i
-- Candidates are the instances whose motion:sweep score (when to look next) has
-- passed. Returns the names to send a wake-up for. Busy instances are looked at
-- again one grace period later; instances with nothing left (or deleted) leave both
-- indexes. A wake-up the sweeper sent that no worker took yet (no worker consumes
-- that component's queues, say) is re-sent after 1, 2, 4 ... 64 grace periods, not
-- every period, so a queue nobody reads does not fill up with copies. An instance on
-- its ready list ('wake' is 'r<ms>') whose list has a motion.ready message out is left
-- there (looked at again one grace period later): its wake-up is coming; with none out
-- (the counter expired: the message was lost) it is re-woken as any other.
local pending = KEYS[#KEYS - 1]
local schedule = KEYS[#KEYS]
local now = now_ms()
local grace = tonumber(ARGV[2])
local out = {}
for i = 1, #ARGV - 2 do
  local meta = KEYS[3 * i - 2]
  local lease = KEYS[3 * i - 1]
  local name = ARGV[i + 2]
  local queued = false
  if redis.call('EXISTS', lease) == 0 and redis.call('EXISTS', KEYS[3 * i]) == 1 then
    local wake = redis.call('HGET', meta, 'wake')
    queued = wake ~= false and string.sub(wake, 1, 1) == 'r'
  end
  if queued or redis.call('EXISTS', lease) == 1 then
    redis.call('ZADD', schedule, 'XX', now, name)
  else
    local m = redis.call('HMGET', meta, 'applied', 'seq')
    if not m[2] or tonumber(m[1] or '0') >= tonumber(m[2]) then
      redis.call('ZREM', pending, name)
      redis.call('ZREM', schedule, name)
      if m[2] then
        redis.call('HDEL', meta, 'holder', 'sweeps')
      end
    else
      -- begin.lua clears 'sweeps' when a worker takes a wake-up
      local sweeps = redis.call('HINCRBY', meta, 'sweeps', 1)
      redis.call('HSET', meta, 'wake', now)
      -- due again (score older than now - grace) after 2^sweeps - 1 more periods
      local later = grace * (2 ^ math.min(sweeps, 6) - 1)
      redis.call('ZADD', schedule, 'XX', now + later, name)
      out[#out + 1] = name
    end
  end
end
return out
