#!lua flags=allow-oom
-- wake: whether the firer should send instance KEYS[1]'s wake-up (and mark it sent).
-- KEYS[1] meta   ARGV[1] how old (ms) a wake-up in flight may be before it counts as lost
-- Returns -1 if the instance is gone (cleared: nothing is written), 0 if a wake-up is in
-- flight (the meta field 'wake', which begin.lua clears when a worker takes it), 1 if
-- the caller must send one ('wake' is set to now, as the enqueue script sets it). A 'wake'
-- of 'r<ms>' (on a ready list since then: ready_lib.lua) counts as sent at that time.
if redis.call('HEXISTS', KEYS[1], 'tag') == 0 then
  return -1
end
local now = now_ms()
local sent = redis.call('HGET', KEYS[1], 'wake')
if sent and now - tonumber((string.gsub(sent, '^r', ''))) <= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'wake', now)
return 1
