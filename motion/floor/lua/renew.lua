#!lua flags=allow-oom
-- renew: extend the lease, only for the worker holding it.
-- KEYS[1] lease   KEYS[2] meta   ARGV[1] token   ARGV[2] lease period (ms)
-- A lease whose key expired (an op held the GIL, so the renewer could not run) but
-- that nobody took since (the fence is still this token) is taken back.
-- Returns 1 if renewed, 0 if the lease was lost.
if holds(KEYS[1], KEYS[2], ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
