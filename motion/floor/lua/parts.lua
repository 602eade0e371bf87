#!lua flags=no-writes,allow-cross-slot-keys
-- parts: run one read command on each of many keys: the parts of a global index that
-- live on one node (a cluster has one part per hash slot; a single Redis one part).
-- KEYS[1] the first part (it routes the call to the node serving its slot)
-- ARGV[1] the command (ZCARD, ZRANGE, ZRANGEBYSCORE, SMEMBERS, HGETALL, HGET)
-- ARGV[2] n, the number of its arguments after the key   ARGV[3..2+n] the arguments
-- ARGV[3+n..] the other parts: on a cluster, all in slots this node serves (undeclared
-- keys of other slots are what allow-cross-slot-keys permits, on this node only)
-- Returns the replies that are not empty (not 0, not an empty list, not nil), each
-- after the position of its part (1 for KEYS[1], 2 for ARGV[3+n], ...): most parts of
-- a cluster's index are empty, so the reply stays small.
local n = tonumber(ARGV[2])
local args = {}
for i = 1, n do
  args[i] = ARGV[2 + i]
end
local out = {}
local function add(position, key)
  local reply = redis.call(ARGV[1], key, unpack(args))
  if reply and reply ~= 0 and not (type(reply) == 'table' and #reply == 0) then
    out[#out + 1] = position
    out[#out + 1] = reply
  end
end
add(1, KEYS[1])
for i = 3 + n, #ARGV do
  add(i - n - 1, ARGV[i])
end
return out
