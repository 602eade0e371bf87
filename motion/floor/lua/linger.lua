#!lua flags=allow-oom
-- linger: the lease holder of a hot instance, its inbox drained, asks to be handed
-- the next update directly: if updates wait already, returns them (as window.lua);
-- if a timer of the instance is due (a debounce fired, a flow resumed), says so, so the
-- drain goes through it now rather than after the linger; else marks the meta 'linger'
-- (enqueue.lua then pushes the next seq onto the nudge list instead of sending a
-- wake-up: the holder BLPOPs it) and says how long until the instance's next timer is
-- due, which bounds the holder's wait.
-- KEYS[1] meta   KEYS[2] inbox   KEYS[3] nudge   KEYS[4] lease   KEYS[5] timers
-- ARGV[1] token   ARGV[2] most updates to return   ARGV[3] most bytes of payloads
-- Returns -1 if the lease is not the caller's, {0, ms until the next timer is due or -1}
-- when lingering, {1, meta_flat (with 'now'), payload(applied+1), ...} when updates
-- wait, {2, meta_flat} when a timer is due.
local m = redis.call('HMGET', KEYS[1], 'inc', 'holder', 'applied', 'seq')
if not holds_given(KEYS[4], m[1], m[2], ARGV[1]) then
  return -1
end
local applied = tonumber(m[3] or '0')
local seq = tonumber(m[4] or '0')
if applied < seq then
  return append_window({1, meta_now(KEYS[1])}, KEYS[2], applied + 1,
    math.min(seq, applied + tonumber(ARGV[2])), ARGV[3])
end
local next_due = -1
if KEYS[5] then
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if first[2] then
    local meta = meta_now(KEYS[1])
    next_due = tonumber(first[2]) - tonumber(meta[#meta])
    if next_due <= 0 then
      return {2, meta}
    end
  end
end
redis.call('DEL', KEYS[3])  -- a nudge left over from an earlier linger
redis.call('HSET', KEYS[1], 'linger', 1)
return {0, next_due}
