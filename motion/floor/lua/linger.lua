#!lua flags=allow-oom
-- linger: the lease holder of a hot instance, its inbox drained, asks to be handed
-- the next update directly: if updates wait already, returns them (as window.lua);
-- else marks the meta 'linger' (enqueue.lua then pushes the next seq onto the nudge
-- list instead of sending a wake-up: the holder BLPOPs it) and returns {}.
-- KEYS[1] meta   KEYS[2] inbox   KEYS[3] nudge   KEYS[4] lease
-- ARGV[1] token   ARGV[2] most updates to return   ARGV[3] most bytes of payloads
-- Returns -1 if the lease is not the caller's, {} when lingering, else
-- {meta_flat (with 'now'), payload(applied+1), ...}.
if not holds(KEYS[4], KEYS[1], ARGV[1]) then
  return -1
end
local m = redis.call('HMGET', KEYS[1], 'applied', 'seq')
local applied = tonumber(m[1] or '0')
local seq = tonumber(m[2] or '0')
if applied < seq then
  return append_window({meta_now(KEYS[1])}, KEYS[2], applied + 1,
    math.min(seq, applied + tonumber(ARGV[2])), ARGV[3])
end
redis.call('DEL', KEYS[3])  -- a nudge left over from an earlier linger
redis.call('HSET', KEYS[1], 'linger', 1)
return {}
