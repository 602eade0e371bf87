#!lua flags=allow-oom
-- watch: where a flush stands, registering it as a waiter (motion.caller.wait).
-- KEYS[1] meta   ARGV[1] the seq waited for ('' with ARGV[4]: read it from there)
-- ARGV[2] '1' to register as a waiter
-- With ARGV[2] = '1', an existing instance whose 'applied' is below the seq waited for
-- counts one more waiter ('waiters'): the commit that moves 'applied' on pushes one item
-- per waiter onto the instance's woke list (commit.lua), which the waiter BLPOPs, and
-- resets the count. A missing instance is not created.
-- Returns {applied, inc}; with KEYS[2] parked and KEYS[3] failed, what a flush that is
-- over reads next, in the same round trip:
--   ARGV[3] the lowest seq whose outcome the waiter has not seen ('' for none)
--   ARGV[4] the meta field holding the seq waited for (a flush: 'last:<flow>'), or ''
-- and returns {applied, inc, target, held, failed, parked} where target is the seq
-- waited for and, once 'applied' reached it (else three empty lists): held, the parked
-- updates up to it (members, at most 256: a debounce or a pause may keep the wait
-- going); failed, the failure records from ARGV[3] to it; parked, the parked members
-- among those (a parked failure is not final), read only when there are records.
local target = ARGV[1]
local m
if ARGV[4] and ARGV[4] ~= '' then
  m = redis.call('HMGET', KEYS[1], 'applied', 'inc', ARGV[4])
  target = m[3] or '0'
else
  m = redis.call('HMGET', KEYS[1], 'applied', 'inc')
end
local settled = tonumber(m[1] or '0') >= tonumber(target)
if ARGV[2] == '1' and m[2] and not settled then
  redis.call('HINCRBY', KEYS[1], 'waiters', 1)
end
if not KEYS[2] then
  return {m[1], m[2]}
end
local held, failed, parked = {}, {}, {}
if settled and tonumber(target) > 0 then
  held = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', target, 'LIMIT', 0, 256)
  if ARGV[3] ~= '' and tonumber(ARGV[3]) <= tonumber(target) then
    failed = redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[3], target)
    if #failed > 0 then
      parked = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[3], target)
    end
  end
end
return {m[1], m[2], target, held, failed, parked}
