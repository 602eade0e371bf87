#!lua flags=allow-oom
-- begin: take an instance's lease with a new fencing token and return the first
-- window of updates and the state, in one round trip.
-- KEYS[1] meta   KEYS[2] lease   KEYS[3] motion:stats:<component>   KEYS[4] inbox
-- KEYS[5] state   KEYS[6] motion:pending   KEYS[7] motion:sweep
-- KEYS[8] (optional) parked: with updates parked (motion.floor.parked) the lease is
-- taken even when the main sequence is all gone through, so their release can run
-- KEYS[9] (optional) nudge: if the lease holder lingers (the meta's 'linger'), a wake-up
-- is pushed there for it (see linger.lua)
-- ARGV[1] lease period (ms; longer after takeovers, see 'strikes': then the meta's
-- 'lease_ms' says how long)   ARGV[2] most updates to return   ARGV[3] the version
-- tag of the worker's copy of the state ('' for none)   ARGV[4] instance name
-- ARGV[5] a random nonce: the token is "<incarnation>:<fence>:<nonce>", so no token
-- of an earlier life of this name (or of a life Redis lost) is ever handed out again
-- ARGV[6] most bytes of payloads to return (at least one is returned)
-- Either way the wake-up flag is cleared: this wake-up was delivered. The sweeper's
-- back-off count is cleared too, unless the instance is held (waiting for code, or
-- its state unreadable), so a held instance is re-woken later and later.
-- Returns
--   {0}   another worker holds the lease (it drains everything)
--   {-1}  no such instance
--   {-2}  nothing to apply (no lease taken; the instance leaves the pending index)
--   {token, meta_flat (with 'now', Redis' clock in ms), state, payload(applied+1), ...}
--         state is {tag, 1} when ARGV[3] is current, else {tag, 0, field1,
--         value1, ...}; a missing payload (never expected) comes back as false.
redis.call('HDEL', KEYS[1], 'wake')
if redis.call('HEXISTS', KEYS[1], 'held') == 0 then
  redis.call('HDEL', KEYS[1], 'sweeps')
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if KEYS[9] and redis.call('HDEL', KEYS[1], 'linger') == 1 then
    -- the holder lingers on the nudge list: this wake-up (a timer due, a flow resumed)
    -- is handed to it now, not after its linger
    redis.call('LPUSH', KEYS[9], 'wake')
  end
  return {0}
end
local m = redis.call('HMGET', KEYS[1], 'applied', 'seq', 'tag', 'inc')
if not m[3] then
  return {-1}
end
local applied = tonumber(m[1] or '0')
local seq = tonumber(m[2] or '0')
if applied >= seq and not (KEYS[8] and redis.call('EXISTS', KEYS[8]) == 1) then
  -- a duplicate or late wake-up: nothing to hold the lease for
  redis.call('HDEL', KEYS[1], 'holder')
  redis.call('ZREM', KEYS[6], ARGV[4])
  redis.call('ZREM', KEYS[7], ARGV[4])
  return {-2}
end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
local token = m[4] .. ':' .. fence .. ':' .. ARGV[5]
-- strikes: takeovers since a holder last committed or released. Each one makes the
-- new lease 4x longer (at most 64x): a holder that is alive but could not renew (an
-- op holding the GIL) is then given the time to finish instead of being taken over
-- again and again, and an update that crashes its workers is retried later and later.
local strikes = tonumber(redis.call('HGET', KEYS[1], 'strikes') or '0')
if redis.call('HEXISTS', KEYS[1], 'holder') == 1 then
  -- the previous holder never released: its lease ran out (crash, pause, partition)
  redis.call('HINCRBY', KEYS[3], 'takeovers', 1)
  strikes = redis.call('HINCRBY', KEYS[1], 'strikes', 1)
end
local period = tonumber(ARGV[1])
if strikes > 0 then
  period = period * 4 ^ math.min(strikes, 3)
  redis.call('HSET', KEYS[1], 'lease_ms', period)
end
redis.call('SET', KEYS[2], token, 'PX', period)
redis.call('HSET', KEYS[1], 'holder', token)
local state
if m[3] == ARGV[3] then
  state = {m[3], 1}
else
  state = redis.call('HGETALL', KEYS[5])
  table.insert(state, 1, 0)
  table.insert(state, 1, m[3])
end
local out = {token, meta_now(KEYS[1]), state}
return append_window(out, KEYS[4], applied + 1, math.min(seq, applied + tonumber(ARGV[2])), ARGV[6])
