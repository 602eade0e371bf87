#!lua
-- enqueue: append one update to an instance's inbox and mark the instance pending.
-- KEYS[1] meta   KEYS[2] inbox   KEYS[3] lease   KEYS[4] motion:pending
-- KEYS[5] KEYS[6] the dedup keys of this period and the one before (token -> seq, and
-- '\0inc' -> the incarnation the hash was written in)
-- KEYS[7] state   KEYS[8] motion:sweep   KEYS[9] dead (dead letters' entries)
-- KEYS[10] failed (dead letters' records)
-- KEYS[11] nudge: the list a lingering lease holder waits on (see linger.lua)
-- KEYS[12] (optional) the Celery queue list to push a wake-up onto
-- KEYS[13] (optional, with KEYS[12]) the queue's ready list (ready_lib.lua): an idle
-- instance is pushed onto it, and a motion.ready message onto KEYS[12] only when none
-- is outstanding for the list; without it, one motion.apply message per wake-up
-- ARGV[1] entry ('flow [SOH fingerprint] NUL sealed')   ARGV[2] flow   ARGV[3] unused
-- (the enqueue time is Redis' clock, written into the stored entry right after the
-- flow as 'STX ms'; a timer's due time follows it as 'ETX due_ms')   ARGV[4] instance name
-- ARGV[5] the version tag of the state the caller served on ('' to skip the check)
-- ARGV[6] the enqueue's token ('' for none)   ARGV[7] how long the dedup key lives (ms)
-- ARGV[8] '1' to send a wake-up only when none is in flight and no worker drains the
-- instance (coalesced), '0' to send one for every update (each shows in Flower)
-- ARGV[9] the motion.apply message, pushed onto KEYS[12] (when given, without KEYS[13])
-- ARGV[10] a timer's delay in ms ('' for none): due = Redis' now + delay
-- ARGV[11] the seq of a dead letter this update re-enqueues ('' for none): the dead
-- letter is removed and 'to:<old seq>' in KEYS[9] names the new seq, all or nothing
-- ARGV[12] (with KEYS[13]) the component   ARGV[13] (with KEYS[13]) the counter's TTL (ms)
-- Not flagged allow-oom: at maxmemory the script is refused before it starts (the
-- caller raises RedisFullError), so nothing is half enqueued.
-- Returns
--   {seq, wake, inc, listed}  inc: the incarnation the update joined (a flush waits in it);
--                listed: now (ms) when this made the instance the lowest of KEYS[8]'s
--                part (it was empty, or held only later looks: on a cluster the caller
--                lists it at now: motion.floor.directory), else 0;
--                wake = 0 when no wake-up is needed (coalesced: a worker drains the
--                instance or a wake-up is in flight), 2 when this script pushed the
--                wake-up (or put the instance on the ready list), 1 when the caller
--                must send it;
--                a token seen before in this incarnation returns the seq it got then (a
--                client retrying after a lost reply enqueues once), with wake = 0
--   {0, 0}       the instance does not exist yet (the caller runs init_state, calls again)
--   {-2, n}      refused: a flow is held and the inbox holds n >= 'max_pending' updates
--   {-3, 0}      ARGV[11] names no dead letter (dropped or retried already): nothing enqueued
--   {-1, tag, field1, value1, ...}  the state changed since the tag in ARGV[5]:
--                nothing enqueued; the current state is returned to serve on again
if ARGV[6] ~= '' then
  -- a dedup hash holds, beside its records, the incarnation it was written in ('\0inc'):
  -- a record of an earlier life (a hash a clear left behind, its scan having run before
  -- the hash was written) is not this life's, and the update is enqueued anew
  local inc = nil
  for i = 5, 6 do
    local seen = redis.call('HGET', KEYS[i], ARGV[6])
    if seen then
      inc = inc or redis.call('HGET', KEYS[1], 'inc')
      local life = redis.call('HGET', KEYS[i], '\0inc')
      if inc and (not life or life == inc) then  -- (no life: written by an earlier version)
        return {tonumber(seen), 0, inc}
      end
    end
  end
end
local m = redis.call('HMGET', KEYS[1], 'tag', 'inc', 'max_pending', 'wake', 'linger')
if not m[1] then
  return {0, 0}
end
if ARGV[5] ~= '' and ARGV[5] ~= m[1] then
  local out = redis.call('HGETALL', KEYS[7])
  table.insert(out, 1, m[1])
  table.insert(out, 1, -1)
  return out
end
-- while a flow is held (motion.caller.control), the inbox holds at most 'max_pending'
if m[3] and redis.call('HLEN', KEYS[2]) >= tonumber(m[3]) then
  return {-2, redis.call('HLEN', KEYS[2])}
end
local retry_of = ARGV[11] or ''
if retry_of ~= '' then
  if redis.call('ZCOUNT', KEYS[10], retry_of, retry_of) == 0 then
    return {-3, 0}
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[10], retry_of, retry_of)
  redis.call('HDEL', KEYS[9], retry_of)
end
local now = now_ms()
local entry = ARGV[1]
local after = string.sub(entry, #ARGV[2] + 1, #ARGV[2] + 1)
if string.sub(entry, 1, #ARGV[2]) == ARGV[2] and (after == '\0' or after == '\1') then
  local stamp = '\2' .. string.format('%d', now)
  if ARGV[10] and ARGV[10] ~= '' then
    stamp = stamp .. '\3' .. string.format('%d', now + tonumber(ARGV[10]))
  end
  entry = ARGV[2] .. stamp .. string.sub(entry, #ARGV[2] + 1)
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
if retry_of ~= '' then
  redis.call('HSET', KEYS[9], 'to:' .. retry_of, seq)
end
redis.call('HSET', KEYS[2], seq, entry)
redis.call('HSET', KEYS[1], 'last:' .. ARGV[2], seq)
redis.call('HINCRBY', KEYS[1], 'pending:' .. ARGV[2], 1)
if ARGV[6] ~= '' then
  local life, now_life = redis.call('HGET', KEYS[5], '\0inc'), m[2] or ''
  if life ~= now_life then  -- a new hash of this period, or an earlier life's: this life's now
    if life then
      redis.call('DEL', KEYS[5])
    end
    redis.call('HSET', KEYS[5], '\0inc', now_life)
    redis.call('PEXPIRE', KEYS[5], ARGV[7])
  end
  redis.call('HSET', KEYS[5], ARGV[6], seq)  -- the seq alone: what every version reads
end
local wake = 0
if ARGV[8] == '0' or (not m[4] and redis.call('EXISTS', KEYS[3]) == 0) then
  wake = 1
  if KEYS[13] and ARGV[8] ~= '0' then
    -- 'r<ms>': on the ready list (the sweeper leaves it there while a message is out)
    redis.call('HSET', KEYS[1], 'wake', 'r' .. now)
    redis.call('RPUSH', KEYS[13], ARGV[4])
    if redis.call('EXISTS', KEYS[13] .. ':n') == 0 then
      push_ready(KEYS[12], KEYS[13], ARGV[12], ARGV[13])
    end
    wake = 2
  else
    redis.call('HSET', KEYS[1], 'wake', now)
    if KEYS[12] then
      -- the message names the seq only now that it is known (\1SEQ\1 placeholder)
      redis.call('LPUSH', KEYS[12], (string.gsub(ARGV[9], '\1SEQ\1', seq)))
      wake = 2
    end
  end
elseif m[5] and redis.call('HDEL', KEYS[1], 'linger') == 1 then
  -- the lease holder lingers for this update (a hot instance): it takes it directly,
  -- without a broker hop, and it shows in the seqs of the task draining it
  redis.call('LPUSH', KEYS[11], seq)
end
-- pending since now (unless it already was); the sweeper first looks one period later
redis.call('ZADD', KEYS[4], 'NX', now, ARGV[4])
local listed = 0
-- on a cluster (KEYS[8] is a part, 'motion:sweep:{tag}'), listed when this is now the
-- part's lowest: the part was empty, or its members are all looked at later (backed off
-- by the sweeper), so its directory entry may be scored later; one Redis lists nothing
if redis.call('ZADD', KEYS[8], 'NX', now, ARGV[4]) == 1 and string.byte(KEYS[8], -1) == 125
    and redis.call('ZRANK', KEYS[8], ARGV[4]) == 0 then
  listed = now
end
return {seq, wake, m[2], listed}
