-- release: free the lease, but only once the inbox is empty, so no update is
-- stranded between "drain finished" and "lease released".
-- KEYS[1] meta   KEYS[2] lease   KEYS[3] motion:pending   KEYS[4] motion:sweep
-- ARGV[1] token   ARGV[2] instance name   ARGV[3] '1' to release even with updates
-- pending (the drain failed: let another worker, or the sweeper, try again)
-- Returns 1 if released, 0 if updates arrived meanwhile (keep draining), -1 if the
-- lease was lost.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
local m = redis.call('HMGET', KEYS[1], 'applied', 'seq')
if ARGV[3] ~= '1' and tonumber(m[1] or '0') < tonumber(m[2] or '0') then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], 'holder')
if tonumber(m[1] or '0') >= tonumber(m[2] or '0') then
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZREM', KEYS[4], ARGV[2])
end
return 1
