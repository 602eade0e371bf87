#!lua flags=no-writes,allow-cross-slot-keys
-- parts: run one read command on each of many keys: the parts of a global index that
-- live on one node (a cluster has one part per hash slot; a single Redis one part).
-- KEYS[1] the first part (it routes the call to the node serving its slot)
-- ARGV[1] the command (ZCARD, ZRANGE, ZRANGEBYSCORE, SMEMBERS, HGETALL)
-- ARGV[2] n, the number of its arguments after the key   ARGV[3..2+n] the arguments
-- ARGV[3+n..] the other parts: on a cluster, all in slots this node serves (undeclared
-- keys of other slots are what allow-cross-slot-keys permits, on this node only)
-- Returns one reply per part, in order (flat lists, as the command gives them).
local n = tonumber(ARGV[2])
local args = {}
for i = 1, n do
  args[i] = ARGV[2 + i]
end
local out = {redis.call(ARGV[1], KEYS[1], unpack(args))}
for i = 3 + n, #ARGV do
  out[#out + 1] = redis.call(ARGV[1], ARGV[i], unpack(args))
end
return out
