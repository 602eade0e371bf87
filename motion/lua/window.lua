-- window: the next updates to apply, in seq order, with the counters the drain needs.
-- KEYS[1] meta   KEYS[2] inbox
-- ARGV[1] the most updates to return
-- Returns {meta_flat, payload(applied+1), payload(applied+2), ...}: meta_flat is the
-- meta hash as a flat list; a missing payload (never expected) comes back as false.
local meta = redis.call('HGETALL', KEYS[1])
local m = redis.call('HMGET', KEYS[1], 'applied', 'seq')
local applied = tonumber(m[1] or '0')
local seq = tonumber(m[2] or '0')
local last = math.min(seq, applied + tonumber(ARGV[1]))
local out = {meta}
if last > applied then
  local fields = {}
  for s = applied + 1, last do
    fields[#fields + 1] = s
  end
  local payloads = redis.call('HMGET', KEYS[2], unpack(fields))
  for i = 1, #payloads do
    out[#out + 1] = payloads[i]
  end
end
return out
