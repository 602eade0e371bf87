-- cancel: settle a not-yet-applied update as cancelled (a ticket's cancel()).
-- KEYS[1] meta   KEYS[2] inbox
-- ARGV[1] seq   ARGV[2] the incarnation the update joined
-- Its inbox entry becomes its tombstone 'flow NUL' (no payload): a worker skips it,
-- and counts it as cancelled; it no longer counts in 'pending:<flow>'. A worker that
-- read the entry before it was cancelled cannot commit it: the commit counts the tombstones in its range (meta 'cancels'
-- says some are pending) and, finding one the worker did not, makes it read again.
-- Returns 1 cancelled (or already), 0 already applied (or failed), -1 the incarnation
-- is gone (the instance was cleared: the update was dropped with it).
local m = redis.call('HMGET', KEYS[1], 'inc', 'applied')
if not m[1] or m[1] ~= ARGV[2] then
  return -1
end
local seq = tonumber(ARGV[1])
if seq <= tonumber(m[2] or '0') then
  return 0
end
local entry = redis.call('HGET', KEYS[2], seq)
if not entry then
  return 0
end
if tombstone_flow(entry) then
  return 1
end
local cut = string.find(entry, '[%z\1\2\3]')
local flow = string.sub(entry, 1, (cut or (#entry + 1)) - 1)
redis.call('HSET', KEYS[2], seq, flow .. '\0')
redis.call('HINCRBY', KEYS[1], 'cancels', 1)
redis.call('HINCRBY', KEYS[1], 'pending:' .. flow, -1)
return 1
