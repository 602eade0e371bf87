#!lua flags=allow-oom,allow-cross-slot-keys
-- fire: claim the instances whose earliest timer is due (debounce fire times, due
-- times of submitted updates, released holds), to send each a wake-up.
-- KEYS[1] the due index (motion.floor.keys.timers_index), or on a cluster its first
-- part on this node; ARGV[3..] its other parts on this node (one per slot: undeclared
-- keys of the node's own slots, which allow-cross-slot-keys permits)
-- ARGV[1] most names to claim   ARGV[2] how long a claim lasts (ms): a claimed name is
-- rescored to now + ARGV[2], so if its wake-up is lost (or the drain cannot release it)
-- any worker's firer claims it again then; the drain's commit rescores it from the
-- instance's own timers once it went through them.
-- Each name is claimed by one firer (the script runs alone): no lock, and a pass
-- costs O(due), not O(timers).
-- Returns {now, name1, name2, ...}.
local now = now_ms()
local out = {now}
local parts = {KEYS[1]}
for i = 3, #ARGV do
  parts[#parts + 1] = ARGV[i]
end
local left = tonumber(ARGV[1])
for _, index in ipairs(parts) do
  if left <= 0 then
    break
  end
  local due = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, left)
  for _, name in ipairs(due) do
    redis.call('ZADD', index, 'XX', now + tonumber(ARGV[2]), name)
    out[#out + 1] = name
  end
  left = left - #due
end
return out
