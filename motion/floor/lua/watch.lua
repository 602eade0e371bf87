#!lua flags=allow-oom
-- watch: where a flush stands, registering it as a waiter (motion.caller.wait).
-- KEYS[1] meta   ARGV[1] the seq waited for   ARGV[2] '1' to register as a waiter
-- With ARGV[2] = '1', an existing instance whose 'applied' is below ARGV[1] counts one
-- more waiter ('waiters'): the commit that moves 'applied' on pushes one item per
-- waiter onto the instance's woke list (commit.lua), which the waiter BLPOPs, and
-- resets the count. A missing instance is not created.
-- Returns {applied, inc}.
local m = redis.call('HMGET', KEYS[1], 'applied', 'inc')
if ARGV[2] == '1' and m[2] and tonumber(m[1] or '0') < tonumber(ARGV[1]) then
  redis.call('HINCRBY', KEYS[1], 'waiters', 1)
end
return m
