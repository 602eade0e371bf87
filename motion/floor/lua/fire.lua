#!lua flags=allow-oom
-- fire: claim the instances whose earliest timer is due (debounce fire times, due
-- times of submitted updates, released holds), to send each a wake-up.
-- KEYS[1] the due index (motion.floor.keys.timers_index)
-- ARGV[1] most names to claim   ARGV[2] how long a claim lasts (ms): a claimed name is
-- rescored to now + ARGV[2], so if its wake-up is lost (or the drain cannot release it)
-- any worker's firer claims it again then; the drain's commit rescores it from the
-- instance's own timers once it went through them.
-- Each name is claimed by one firer (the script runs alone): no lock, and a pass
-- costs O(due), not O(timers).
-- Returns {now, name1, name2, ...}.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {now}
for _, name in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), name)
  out[#out + 1] = name
end
return out
