-- begin_lib: taking an instance's lease and reading its first window (put after
-- lib.lua), shared by begin.lua and ready.lua (a take that begins the drains of the
-- names it takes, in the same round trip). k and a are begin.lua's KEYS and ARGV, in
-- its order. limit (optional): the state is returned only if Redis' MEMORY USAGE of it
-- is at most limit bytes; a larger one comes back as {tag, 1}, as a current copy does:
-- the worker uses its own copy if it is at that tag, else reads the state.
local function begin_lease(k, a, limit)
  redis.call('HDEL', k[1], 'wake')
  if redis.call('HEXISTS', k[1], 'held') == 0 then
    redis.call('HDEL', k[1], 'sweeps')
  end
  if redis.call('EXISTS', k[2]) == 1 then
    if k[9] and redis.call('HDEL', k[1], 'linger') == 1 then
      -- the holder lingers on the nudge list: this wake-up (a timer due, a flow resumed)
      -- is handed to it now, not after its linger
      redis.call('LPUSH', k[9], 'wake')
    end
    return {0}
  end
  local m = redis.call('HMGET', k[1], 'applied', 'seq', 'tag', 'inc')
  if not m[3] then
    return {-1}
  end
  local applied = tonumber(m[1] or '0')
  local seq = tonumber(m[2] or '0')
  if applied >= seq and not (k[8] and redis.call('EXISTS', k[8]) == 1) then
    -- a duplicate or late wake-up: nothing to hold the lease for
    redis.call('HDEL', k[1], 'holder')
    redis.call('ZREM', k[6], a[4])
    redis.call('ZREM', k[7], a[4])
    return {-2}
  end
  local fence = redis.call('HINCRBY', k[1], 'fence', 1)
  local token = m[4] .. ':' .. fence .. ':' .. a[5]
  -- strikes: takeovers since a holder last committed or released. Each one makes the
  -- new lease 4x longer (at most 64x): a holder that is alive but could not renew (an
  -- op holding the GIL) is then given the time to finish instead of being taken over
  -- again and again, and an update that crashes its workers is retried later and later.
  local strikes = tonumber(redis.call('HGET', k[1], 'strikes') or '0')
  if redis.call('HEXISTS', k[1], 'holder') == 1 then
    -- the previous holder never released: its lease ran out (crash, pause, partition)
    redis.call('HINCRBY', k[3], 'takeovers', 1)
    strikes = redis.call('HINCRBY', k[1], 'strikes', 1)
  end
  local period = tonumber(a[1])
  if strikes > 0 then
    period = period * 4 ^ math.min(strikes, 3)
    redis.call('HSET', k[1], 'lease_ms', period)
  end
  redis.call('SET', k[2], token, 'PX', period)
  redis.call('HSET', k[1], 'holder', token)
  local state
  if m[3] == a[3] or (limit and (redis.call('MEMORY', 'USAGE', k[5]) or 0) > limit) then
    state = {m[3], 1}
  else
    state = redis.call('HGETALL', k[5])
    table.insert(state, 1, 0)
    table.insert(state, 1, m[3])
  end
  local out = {token, meta_now(k[1]), state}
  return append_window(out, k[4], applied + 1, math.min(seq, applied + tonumber(a[2])), a[6])
end
