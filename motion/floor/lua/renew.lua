-- renew: extend the lease, only for the worker holding it.
-- KEYS[1] lease   ARGV[1] token   ARGV[2] lease period (ms)
-- Returns 1 if renewed, 0 if the lease was lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
