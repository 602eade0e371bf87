#!lua flags=allow-oom
-- commit: apply updates first..last to the state, if this worker still holds the lease
-- and they are the next in order. The one place that changes committed state.
-- With ARGV[8] = 1 it then goes on, in the same round trip: it releases the lease if
-- the inbox is empty, or else returns the next window of updates.
-- KEYS[1] meta   KEYS[2] state   KEYS[3] inbox   KEYS[4] lease   KEYS[5] failed
-- KEYS[6] motion:stats:<component>   KEYS[7] motion:pending   KEYS[8] motion:sweep
-- KEYS[9] the serve-cache hash (dropped when the version moves on)   KEYS[10] motion:held
-- ARGV[1] token   ARGV[2] first seq   ARGV[3] last seq   ARGV[4] lease period (ms)
-- ARGV[5] with ARGV[8] = 3, how long (ms) the BLPOP sent after this commit waits (else
-- unused: the commit time is Redis' clock)   ARGV[6] 1 to replace the whole state (a migration), else 0
-- ARGV[7] how many state changes the version advances by (one per update that changed it)
-- ARGV[8] 1 to release or return the next window after committing, 2 the same but,
-- instead of releasing, keep the lease and linger (as linger.lua: a hot instance), else 0
-- ARGV[9] most updates in the next window   ARGV[10] instance name
-- ARGV[11] a random nonce for the new version tag ("<version>.<incarnation>.<nonce>":
-- a version Redis lost and counted again gets another tag, so no cached copy aliases it),
-- kept as the meta field 'committed' too
-- ARGV[12] most bytes of payloads in the next window (at least one is returned)
-- then eight counted lists, each "n, then n pairs":
--   state fields (field, value) | stats counters (field, increment)
--   meta counters (field, increment) | failure records (seq, json)
--   parked (seq, flow): held by a flow-control option; the watermark passes them, their
--   payloads stay | meta fields to set (field, value; '' deletes) | timers (flow, due ms;
--   '' removes) | released (seq, flow): parked updates this commit goes through
-- KEYS[11] parked   KEYS[12] timers   KEYS[13] the due index (motion.floor.keys.timers_index)
-- KEYS[14] history   KEYS[15..19] replay meta, base0, base1, log0, log1
-- KEYS[20] motion:minutes:{<component>}:<hour>, the per-minute counters
-- then the history cap, the retain cap and the history records (lua/history.lua)
-- A release (ARGV[2] = '0'): the released seqs must all be parked (else -2), the
-- watermark does not move, ARGV[8] must be 0.
-- KEYS[21] dead: each failed update's inbox entry is kept there, by seq, beside its
-- record (so it can be retried), and goes when its record is trimmed.
-- KEYS[22] nudge: the list a lingering drain waits on (ARGV[8] = 2, see linger.lua)
-- KEYS[23] woke: a commit that moves 'applied' on pushes one item per waiting flush
-- (the meta's 'waiters', counted by watch.lua) and resets the count
-- Cancelled updates (Ticket.cancel): the meta field 'cancels' counts the tombstones not
-- yet committed; a worker skips each tombstone and decrements 'cancels' (a meta counter).
-- Returns -2 too when first..last holds another number of tombstones than the worker
-- skipped (one was cancelled after it read the window): it reads again. Each committed
-- tombstone counts 'cancelled:<flow>' in the component's stats.
-- Returns -1 if the lease is lost (a zombie's commit), -2 if first seq is not
-- applied + 1 (already applied: a duplicate). Otherwise, with ARGV[8] = 0, the new
-- version tag; with ARGV[8] = 1, {tag, 1} when the lease was released, or
-- {tag, 0, meta_flat, payload(last+1), ...} when more updates wait (meta_flat
-- with 'now', Redis' clock in ms); with ARGV[8] = 2, {tag, 2, ms until the next timer
-- is due or -1} when lingering.
-- ARGV[8] = 3: as 2, for a drain that sends a BLPOP on the nudge list and a window read
-- in the same pipeline (motion.worker.lease.commit): when it does not linger (more
-- updates wait, a timer is due within ARGV[5] ms, or the commit is refused) it pushes a
-- nudge so that BLPOP returns at once, and returns {tag, 0} without the next window
-- (the window read after it brings it).
-- Cost: Redis' CPU here is mostly Lua's (each table, closure and string a script
-- allocates is paid for again by the garbage collector, which walks every loaded
-- script), so the meta is read by one HMGET, Redis' clock by one TIME, and no table
-- is built that the script does not need.
-- The token must hold the lease *and* belong to the instance's incarnation (a lease
-- key left over from another life, e.g. by copy_db, is not this life's lease): see
-- holds_given() in lib.lua.
-- A commit clears the instance's 'held' mark (waiting for code, state unreadable):
-- a worker could go on. Flagged allow-oom: at maxmemory a commit still runs, and it
-- deletes the applied payloads before it writes, so draining frees memory.
local pipelined = ARGV[8] == '3'
local function refused(code)
  if pipelined then  -- (not state: it only ends the BLPOP sent after this commit)
    redis.call('LPUSH', KEYS[22], 'refused')
  end
  return code
end
local mv = redis.call('HMGET', KEYS[1], 'inc', 'holder', 'applied', 'seq', 'cancels', 'version',
  'waiters')
if not holds_given(KEYS[4], mv[1], mv[2], ARGV[1]) then
  return refused(-1)
end
local inc = mv[1]
local applied = tonumber(mv[3] or '0')
local release = ARGV[2] == '0'
if not release and applied + 1 ~= tonumber(ARGV[2]) then
  return refused(-2)
end
-- where each counted list starts
local at = {13}
for k = 2, 8 do
  at[k] = at[k - 1] + 2 * tonumber(ARGV[at[k - 1]]) + 1
end
local function pairs_of(k)
  local out = {}
  for j = 1, tonumber(ARGV[at[k]]) do
    out[j] = {ARGV[at[k] + 2 * j - 1], ARGV[at[k] + 2 * j]}
  end
  return out
end
local parked, released = pairs_of(5), pairs_of(8)
for _, p in ipairs(released) do
  if not redis.call('ZSCORE', KEYS[11], p[1] .. ':' .. p[2]) then
    return refused(-2)  -- already gone through (a duplicate), or dropped meanwhile
  end
end
local keep = {}
for _, p in ipairs(parked) do
  keep[p[1]] = true
end
local last = tonumber(ARGV[3])
if tonumber(mv[5] or '0') > 0 then
  -- the tombstones this commit goes through (the range less what it parks, and what
  -- it releases): as many as the worker skipped (its 'cancels' decrement)?
  local claimed = 0
  for _, p in ipairs(pairs_of(3)) do
    if p[1] == 'cancels' then
      claimed = -tonumber(p[2])
    end
  end
  local through = {}
  if not release then
    for s = tonumber(ARGV[2]), last do
      if not keep[tostring(s)] then
        through[#through + 1] = s
      end
    end
  end
  for _, p in ipairs(released) do
    through[#through + 1] = p[1]
  end
  local flows = {}
  for _, s in ipairs(through) do
    local flow = tombstone_flow(redis.call('HGET', KEYS[3], s))
    if flow then
      flows[#flows + 1] = flow
    end
  end
  if #flows ~= claimed then
    return refused(-2)
  end
  for _, flow in ipairs(flows) do
    redis.call('HINCRBY', KEYS[6], 'cancelled:' .. flow, 1)
  end
end
local failing = {}  -- each failed update's entry is kept beside its dead letter
for _, p in ipairs(pairs_of(4)) do
  failing[p[1]] = true
  local e = redis.call('HGET', KEYS[3], p[1])
  if e then
    redis.call('HSET', KEYS[21], p[1], e)
  end
end
-- history and retained updates (lua/history.lua): KEYS[14] history, KEYS[15..19]
-- replay meta, base0, base1, log0, log1; their arguments follow the eight lists
local now = now_ms()  -- Redis' clock, read once
local version_before = tonumber(mv[6] or '0')
local h = at[8] + 2 * tonumber(ARGV[at[8]]) + 1
record_history(KEYS[14], KEYS[2], ARGV, h, ARGV[6] == '1', ARGV[11], inc, version_before, now)
retain_updates({KEYS[15], KEYS[16], KEYS[17], KEYS[18], KEYS[19]}, KEYS[3], KEYS[2], ARGV, h,
  {tonumber(ARGV[2]), last, keep, released}, inc)
local minute, lag, lagged = nil, 0, 0
if KEYS[20] then
  -- per-minute counters (the dashboard's charts): each applied update's lag from its
  -- enqueue (the entry's STX time) to this commit, read before the entries go
  minute = math.floor(now / 60000) .. ':'
  local function stamp(s)
    local e = redis.call('HGET', KEYS[3], s)
    local ms = e and string.match(e, '^[^%z\1\2]*\2(%d+)')
    if ms then
      lag, lagged = lag + now - tonumber(ms), lagged + 1
    end
  end
  for s = tonumber(ARGV[2]), last do
    if not keep[tostring(s)] then
      stamp(s)
    end
  end
  for _, p in ipairs(released) do
    stamp(p[1])
  end
end
if not release then  -- the applied entries go (a parked one's stays): one HDEL
  local gone = {}
  for s = tonumber(ARGV[2]), last do
    if not keep[tostring(s)] then
      gone[#gone + 1] = s
    end
  end
  for lo = 1, #gone, 1000 do  -- (unpack's stack is bounded)
    redis.call('HDEL', KEYS[3], unpack(gone, lo, math.min(lo + 999, #gone)))
  end
end
for _, p in ipairs(released) do
  redis.call('ZREM', KEYS[11], p[1] .. ':' .. p[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], p[1], p[1])  -- its dead letter, if retried
  if not failing[p[1]] then  -- (failed again: its new dead letter keeps the entry)
    redis.call('HDEL', KEYS[21], p[1])
  end
  if not keep[p[1]] then
    redis.call('HDEL', KEYS[3], p[1])
  end
  if redis.call('HINCRBY', KEYS[1], 'parked:' .. p[2], -1) <= 0 then
    redis.call('HDEL', KEYS[1], 'parked:' .. p[2])
  end
end
for _, p in ipairs(parked) do
  redis.call('ZADD', KEYS[11], p[1], p[1] .. ':' .. p[2])
  redis.call('HINCRBY', KEYS[1], 'parked:' .. p[2], 1)
end
for _, p in ipairs(pairs_of(6)) do
  if p[2] == '' then
    redis.call('HDEL', KEYS[1], p[1])
  else
    redis.call('HSET', KEYS[1], p[1], p[2])
  end
end
local timers = pairs_of(7)
for _, p in ipairs(timers) do
  if p[2] == '' then
    redis.call('ZREM', KEYS[12], p[1])
  else
    redis.call('ZADD', KEYS[12], p[2], p[1])
  end
end
-- a flow with updates parked has a way out: a hold (its resume, retry or drop sets a
-- timer) or a timer. The worker parked by the meta it read; a hold that ended since
-- (released when nothing was parked yet) left none: a timer due now releases them
local freed = 0
if #parked > 0 and redis.call('HEXISTS', KEYS[1], 'hold:*') == 0 then
  local seen = {}
  for _, p in ipairs(parked) do  -- (once per flow: a debounce parks every update)
    local flow = p[2]
    if not seen[flow] then
      seen[flow] = true
      if redis.call('HEXISTS', KEYS[1], 'hold:' .. flow) == 0
          and not redis.call('ZSCORE', KEYS[12], flow) then
        redis.call('ZADD', KEYS[12], now, flow)
        freed = freed + 1
      end
    end
  end
end
if #timers > 0 or #released > 0 or freed > 0 then
  local first = redis.call('ZRANGE', KEYS[12], 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('ZADD', KEYS[13], first[2], ARGV[10])
  else
    redis.call('ZREM', KEYS[13], ARGV[10])
  end
end
if ARGV[6] == '1' then
  redis.call('DEL', KEYS[2])
end
local version = nil  -- the tag after this commit
if ARGV[7] ~= '0' then
  local v = version_before + tonumber(ARGV[7])
  version = v .. '.' .. inc .. '.' .. ARGV[11]
  redis.call('HSET', KEYS[1], 'version', v, 'tag', version)
end
if ARGV[7] ~= '0' or ARGV[6] == '1' then
  redis.call('DEL', KEYS[9])
end
local i = 13
local n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HINCRBY', KEYS[6], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
  if minute and string.sub(ARGV[i + 2 * j - 1], 1, 6) ~= 'calls:' then
    redis.call('HINCRBY', KEYS[20], minute .. ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
  end
end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  if ARGV[i + 2 * j] ~= '0' then
    redis.call('HINCRBY', KEYS[1], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
  end
end
i = i + 2 * n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('ZADD', KEYS[5], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
if n > 0 then
  -- dead letters: the newest 1,000 kept, the rest counted
  local old = redis.call('ZRANGE', KEYS[5], 0, -1001, 'WITHSCORES')
  if #old > 0 then
    redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -1001)
    redis.call('HINCRBY', KEYS[1], 'failed_dropped', #old / 2)
    for j = 2, #old, 2 do
      redis.call('HDEL', KEYS[21], old[j])
    end
  end
end
-- 'committed': this commit's nonce, so a drain whose reply was lost (and whose re-send
-- was refused) knows its commit ran (motion.worker.lease.settle)
if release then
  redis.call('HSET', KEYS[1], 'applied_at', now, 'committed', ARGV[11])
else
  redis.call('HSET', KEYS[1], 'applied', last, 'applied_at', now, 'committed', ARGV[11])
  if mv[7] then  -- flushes wait: wake each (an extra item only makes one look again)
    redis.call('HDEL', KEYS[1], 'waiters')
    local items = {}
    for j = 1, math.min(tonumber(mv[7]), 64) do
      items[j] = '1'
    end
    if #items > 0 then
      redis.call('RPUSH', KEYS[23], unpack(items))
      redis.call('PEXPIRE', KEYS[23], 1000)
    end
  end
end
if redis.call('HDEL', KEYS[1], 'held') == 1 then
  redis.call('HDEL', KEYS[1], 'sweeps')
  redis.call('ZREM', KEYS[10], ARGV[10])
end
redis.call('HDEL', KEYS[1], 'strikes', 'lease_ms')  -- the holder was alive: no takeover to pay for
version = version or redis.call('HGET', KEYS[1], 'tag')
local seq = tonumber(mv[4])
if minute then
  -- lag (sum and count, ms) and the backlog left behind this commit (updates not yet
  -- past the watermark: sum, count and max of the samples); kept 48 h and an hour
  local backlog = seq - (release and applied or last)
  if lagged > 0 then
    redis.call('HINCRBY', KEYS[20], minute .. 'lag_ms', lag)
    redis.call('HINCRBY', KEYS[20], minute .. 'lag_n', lagged)
  end
  redis.call('HINCRBY', KEYS[20], minute .. 'backlog', backlog)
  redis.call('HINCRBY', KEYS[20], minute .. 'backlog_n', 1)
  local top = tonumber(redis.call('HGET', KEYS[20], minute .. 'backlog_max') or '-1')
  if backlog > top then
    redis.call('HSET', KEYS[20], minute .. 'backlog_max', backlog)
  end
  redis.call('EXPIRE', KEYS[20], 49 * 3600)
end
if ARGV[8] ~= '1' and ARGV[8] ~= '2' and not pipelined then
  redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[4])
  return version
end
-- a timer already due (see release.lua) keeps the lease: the drain goes through it;
-- a lingering drain is told how long until the next one is due (its wait's bound)
local drained = seq <= last
local next_due = -1
if drained then
  local first = redis.call('ZRANGE', KEYS[12], 0, 0, 'WITHSCORES')
  if first[2] then
    next_due = tonumber(first[2]) - now
    drained = next_due > 0
      and not (pipelined and next_due < tonumber(ARGV[5]))  -- due before the BLPOP ends
  end
end
if drained and (ARGV[8] == '2' or pipelined) then
  -- linger: the next enqueue pushes its seq onto the nudge list, not a wake-up
  redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[4])
  redis.call('DEL', KEYS[22])
  redis.call('HSET', KEYS[1], 'linger', 1)
  return {version, 2, next_due}
end
if drained then
  redis.call('DEL', KEYS[4])
  redis.call('HDEL', KEYS[1], 'holder')
  redis.call('ZREM', KEYS[7], ARGV[10])
  redis.call('ZREM', KEYS[8], ARGV[10])
  return {version, 1}
end
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[4])
if pipelined then
  redis.call('LPUSH', KEYS[22], 'more')
  return {version, 0}
end
local out = {version, 0, meta_now(KEYS[1])}
return append_window(out, KEYS[3], last + 1, math.min(seq, last + tonumber(ARGV[9])), ARGV[12])
