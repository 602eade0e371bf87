#!lua flags=allow-oom
-- ready: a motion.ready task takes instances off its ready list (ready_lib.lua).
-- KEYS[1] the ready list   KEYS[2] its counter (KEYS[1] .. ':n')   KEYS[3] the Celery queue
-- ARGV[1] most names to take (the task's free capacity; 0: the task leaves without
-- taking, its worker stopping: it is counted out, and if names remain and no other
-- message is out, a message is pushed for another worker)   ARGV[2] most motion.ready
-- messages outstanding for the list   ARGV[3] component   ARGV[4] the counter's TTL (ms)
-- ARGV[5] (optional) '1': a task that may linger (motion.worker.ready) keeps its place in
-- the count when the list runs short, and waits on the list itself for the next name
-- ARGV[6] (optional, with KEYS[4..6] = the component's counters, motion:pending,
-- motion:sweep, as begin.lua's KEYS[3], [6], [7]) the lease period (ms): the take also
-- begins the drain of each name it takes (begin_lib.lua: the lease, the first window,
-- the state if its MEMORY USAGE is at most ARGV[10] bytes), so a drain starts with no
-- round trip of its own; ARGV[7] most updates per window, ARGV[8] a random nonce (each
-- name's token gets it with the name's place in the take after it), ARGV[9] most
-- bytes of payloads per name, ARGV[10] the state limit (bytes)
-- Without ARGV[6], each name taken has its meta field 'wake' set to Redis' clock: its
-- wake-up is being delivered (begin.lua clears it), so if this worker dies before its
-- drain begins, the sweeper re-wakes it one sweep period later. (With ARGV[6], a name
-- whose lease this take took and whose worker dies is re-woken once the lease expires.)
-- A take that leaves names on the list renews the counter's TTL.
-- Returns {more, name1, ...} (with ARGV[6]: {more, name1, begin1, name2, begin2, ...},
-- begin_n what begin.lua returns for name_n): more = 1 when the list may hold more (the
-- task keeps its place in the count and takes again once it has capacity; if more
-- remain and fewer than ARGV[2] messages are out, a sibling message was pushed for
-- another worker),
-- 0 when the list is empty: the task is counted out in this same call, so an instance
-- pushed from now on comes with a message of its own (none is left with no task coming);
-- 2 instead of 0 with ARGV[5] = '1': the list is empty and the task still counts (the
-- counter's TTL renewed), so an instance pushed from now on is pushed with no message,
-- for the task to pop (it takes again with ARGV[5] = '' before it leaves).
local function count_out()
  local n = tonumber(redis.call('GET', KEYS[2]) or '0')
  if n <= 1 then
    redis.call('DEL', KEYS[2])
  else
    redis.call('DECR', KEYS[2])
  end
end
local want = tonumber(ARGV[1])
if want == 0 then  -- the task leaves without taking (its worker stops)
  count_out()
  if redis.call('LLEN', KEYS[1]) > 0 and not redis.call('GET', KEYS[2]) then
    push_ready(KEYS[3], KEYS[1], ARGV[3], ARGV[4])  -- for another worker
  end
  return {0}
end
local names = redis.call('LPOP', KEYS[1], want)
if not names then
  names = {}
end
local begun = {}
if ARGV[6] and ARGV[6] ~= '' then
  for i = 1, #names do
    local base = 'motion:{' .. names[i] .. '}:'  -- keys.InstanceKeys
    local k = {base .. 'meta', base .. 'lease', KEYS[4], base .. 'inbox', base .. 'state',
      KEYS[5], KEYS[6], base .. 'parked', base .. 'nudge'}
    local a = {ARGV[6], ARGV[7], '', names[i], ARGV[8] .. string.format('%x', i), ARGV[9]}
    begun[i] = begin_lease(k, a, tonumber(ARGV[10]))
  end
else
  local now = now_ms()
  for i = 1, #names do
    local meta = 'motion:{' .. names[i] .. '}:meta'  -- keys.InstanceKeys.meta
    if redis.call('HEXISTS', meta, 'tag') == 1 then
      redis.call('HSET', meta, 'wake', now)
    end
  end
end
local more = 0
if #names < want or redis.call('LLEN', KEYS[1]) == 0 then
  if ARGV[5] == '1' then
    more = 2
    redis.call('PEXPIRE', KEYS[2], ARGV[4])
  else
    count_out()
  end
else
  more = 1
  -- a task still taking keeps the count alive (it heals one TTL after the last take)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then
    push_ready(KEYS[3], KEYS[1], ARGV[3], ARGV[4])
  end
end
local out = {more}
for i = 1, #names do
  out[#out + 1] = names[i]
  out[#out + 1] = begun[i]  -- (nil without ARGV[6]: nothing is added)
end
return out
