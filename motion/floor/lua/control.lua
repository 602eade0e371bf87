#!lua flags=allow-oom
-- control: pause, resume, retry in place or drop a parked update (motion.floor.parked).
-- KEYS[1] meta   KEYS[2] parked   KEYS[3] timers   KEYS[4] the due index   KEYS[5] inbox
-- KEYS[6] failed
-- ARGV[1] 'pause' | 'resume' | 'retry' | 'drop'   ARGV[2] the flow ('*': the whole
-- instance; pause and resume) or the seq (retry and drop)   ARGV[3] instance name
-- ARGV[4] MOTION_MAX_PENDING (pause: kept as the meta field 'max_pending', which the
-- enqueue script honours while a hold lasts)
-- A released flow gets a timer due now (ZADD LT: an earlier one stays), so a worker's
-- firer wakes the instance (durable: no wake-up of the caller's to lose).
-- Returns {changed (0/1/2), flow or '', hold reason before}: for retry and drop,
-- changed = 0 when ARGV[2] is not parked (retry: nor a parked dead letter); a retry
-- of a parked dead letter that is not the one its flow is paused on returns 2 and
-- changes nothing: it stays in place and goes when its flow does (enqueued anew it
-- would be applied twice).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, '', ''}
end
local now = now_ms()
local function index()
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('ZADD', KEYS[4], first[2], ARGV[3])
  else
    redis.call('ZREM', KEYS[4], ARGV[3])
  end
end
local function wake(flow)
  -- flow nil: every parked flow that no hold keeps
  if redis.call('HEXISTS', KEYS[1], 'hold:*') == 1 then
    return
  end
  local flows = {}
  if flow then
    flows[1] = flow
  else
    local fields = redis.call('HKEYS', KEYS[1])
    for _, f in ipairs(fields) do
      if string.sub(f, 1, 7) == 'parked:' then
        flows[#flows + 1] = string.sub(f, 8)
      end
    end
  end
  for _, f in ipairs(flows) do
    if redis.call('HEXISTS', KEYS[1], 'hold:' .. f) == 0
        and tonumber(redis.call('HGET', KEYS[1], 'parked:' .. f) or '0') > 0 then
      -- LT: due now, also where a later timer was left (a dropped update's due time)
      redis.call('ZADD', KEYS[3], 'LT', now, f)
    end
  end
  index()
end
local function unheld()
  -- no hold left: the enqueue cap goes with the last one
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(f, 1, 5) == 'hold:' then
      return
    end
  end
  redis.call('HDEL', KEYS[1], 'max_pending')
end
local mode = ARGV[1]
if mode == 'pause' or mode == 'resume' then
  local field = 'hold:' .. ARGV[2]
  local before = redis.call('HGET', KEYS[1], field) or ''
  if mode == 'pause' then
    redis.call('HSET', KEYS[1], 'max_pending', ARGV[4])
    if before ~= '' then
      return {0, ARGV[2], before}
    end
    redis.call('HSET', KEYS[1], field, 'pause')
    return {1, ARGV[2], before}
  end
  if before ~= 'pause' then
    return {0, ARGV[2], before}  -- not paused (a flow stopped at a failure: retry or drop)
  end
  redis.call('HDEL', KEYS[1], field)
  unheld()
  if ARGV[2] == '*' then
    wake(nil)
  else
    wake(ARGV[2])
  end
  return {1, ARGV[2], before}
end
-- retry / drop: the parked member of seq ARGV[2]
local found = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[2], ARGV[2])
if not found[1] then
  return {0, '', ''}
end
local member = found[1]
local flow = string.sub(member, #ARGV[2] + 2)
local before = redis.call('HGET', KEYS[1], 'hold:' .. flow) or ''
local paused_here = before == 'failed:' .. ARGV[2]
if mode == 'retry' then
  if not paused_here then
    local failed = redis.call('ZCOUNT', KEYS[6], ARGV[2], ARGV[2]) > 0
    return {failed and 2 or 0, flow, before}
  end
  redis.call('HDEL', KEYS[1], 'hold:' .. flow)
  unheld()
  wake(flow)
  return {1, flow, before}
end
-- drop: it leaves the inbox for good (its dead letter too); its flow goes on
redis.call('ZREM', KEYS[2], member)
-- a tombstone (cancelled after a drain read it, then parked: 'flow NUL', see cancel.lua)
-- left the pending count already, and is counted in 'cancels' until a commit goes
-- through it: this drop does
local tombstone = tombstone_flow(redis.call('HGET', KEYS[5], ARGV[2]))
redis.call('HDEL', KEYS[5], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[6], ARGV[2], ARGV[2])
if redis.call('HINCRBY', KEYS[1], 'parked:' .. flow, -1) <= 0 then
  -- nothing of the flow parked now: its timer (the dropped update's due time, say) and
  -- its debounce's start go too, so a drain that parks behind it by what it read sets
  -- one due now (commit.lua)
  redis.call('HDEL', KEYS[1], 'parked:' .. flow, 'dfirst:' .. flow)
  redis.call('ZREM', KEYS[3], flow)
  index()
end
local count = tombstone and 'cancels' or ('pending:' .. flow)
if redis.call('HINCRBY', KEYS[1], count, -1) <= 0 then
  redis.call('HDEL', KEYS[1], count)
end
if paused_here then
  redis.call('HDEL', KEYS[1], 'hold:' .. flow)
  unheld()
end
wake(flow)
return {1, flow, before}
