-- window: the next updates to apply, in seq order, with the counters the drain needs.
-- KEYS[1] meta   KEYS[2] inbox
-- ARGV[1] the most updates to return   ARGV[2] (optional) the first seq to return
-- (default applied + 1: a drain reads further to gather a long run of a batch op)
-- ARGV[3] (optional) most bytes of payloads to return (at least one is returned)
-- Returns {meta_flat (with 'now', Redis' clock in ms), payload(first), payload(first + 1), ...}: meta_flat is the meta
-- hash as a flat list; a missing payload (never expected) comes back as false.
local meta = meta_now(KEYS[1])
local m = redis.call('HMGET', KEYS[1], 'applied', 'seq')
local applied = tonumber(m[1] or '0')
local seq = tonumber(m[2] or '0')
local first = applied + 1
if ARGV[2] and ARGV[2] ~= '' then
  first = tonumber(ARGV[2])
end
local last = math.min(seq, first + tonumber(ARGV[1]) - 1)
return append_window({meta}, KEYS[2], first, last, ARGV[3])
