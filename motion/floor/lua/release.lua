#!lua flags=allow-oom
-- release: free the lease, but only once the inbox is empty, so no update is
-- stranded between "drain finished" and "lease released".
-- KEYS[1] meta   KEYS[2] lease   KEYS[3] motion:pending   KEYS[4] motion:sweep
-- KEYS[5] motion:held   KEYS[6] (optional) timers: a timer of the instance already due
-- (a debounce fired, a hold released while the drain ran) keeps the lease too, so the
-- drain goes through it before it lets go
-- ARGV[1] token   ARGV[2] instance name   ARGV[3] '1' to release even with updates
-- pending (the drain failed: let another worker, or the sweeper, try again)
-- ARGV[4] (optional, with ARGV[3] = '1') why the instance is held: a JSON text kept in
-- the meta field 'held' (waiting for code this worker lacks, or a state it cannot
-- read) until a commit clears it; the instance joins motion:held (scored by Redis'
-- clock) and stays pending, and the sweeper re-wakes it later and later.
-- Returns 1 if released, 0 if updates arrived meanwhile (keep draining), 2 if a timer
-- is due (go through it), -1 if the lease was lost.
if not holds(KEYS[2], KEYS[1], ARGV[1]) then
  return -1
end
local m = redis.call('HMGET', KEYS[1], 'applied', 'seq')
if ARGV[3] ~= '1' and tonumber(m[1] or '0') < tonumber(m[2] or '0') then
  return 0
end
if ARGV[3] ~= '1' and KEYS[6]
    and redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now_ms(), 'LIMIT', 0, 1)[1] then
  return 2
end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], 'holder', 'strikes', 'lease_ms')
if tonumber(m[1] or '0') >= tonumber(m[2] or '0') then
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZREM', KEYS[4], ARGV[2])
elseif ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'held', ARGV[4])
  redis.call('ZADD', KEYS[5], 'NX', now_ms(), ARGV[2])
end
return 1
