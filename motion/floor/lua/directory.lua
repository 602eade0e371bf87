#!lua flags=no-writes
-- directory: the parts of a cluster-wide index due now, read from its directory of
-- non-empty parts (motion.floor.directory; a cluster only).
-- KEYS[1] the directory (slot tags scored at most the lowest score in each part)
-- ARGV[1] how late a score must be to count (ms: due when <= now - ARGV[1])
-- ARGV[2] most tags to return
-- now is Redis' clock (this node's), the clock the indexes are scored by.
-- Returns {now, the lowest score listed ('' when none), tag1, tag2, ...}.
local now = now_ms()
local out = {now, ''}
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then
  out[2] = first[2]
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0,
  tonumber(ARGV[2]))
for _, tag in ipairs(due) do
  out[#out + 1] = tag
end
return out
