-- lib: functions every script may use; motion/scripts.py puts this file before each
-- script's own text (after its #!lua line, if any) when it loads it.

-- Redis' clock in milliseconds: the one clock of enqueue times, ages and sweep
-- schedules, whatever the callers' and workers' clocks say.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The meta hash as a flat list, with Redis' clock added as the pseudo-field 'now'.
local function meta_now(meta)
  local out = redis.call('HGETALL', meta)
  out[#out + 1] = 'now'
  out[#out + 1] = tostring(now_ms())
  return out
end

-- Whether the lease is held by token: the token belongs to the instance's incarnation
-- (its "<incarnation>:" prefix: a token of an earlier life of the name, or a lease key
-- copied from another life, is never this life's), and the lease key says so, or the
-- key expired (the holder could not renew: an op held the GIL) but nobody took it
-- since (the meta's holder is still token). The token is what makes a commit safe;
-- the expiry only lets another worker take over.
local function holds(lease, meta, token)
  local m = redis.call('HMGET', meta, 'inc', 'holder')
  if not m[1] or string.sub(token, 1, #m[1] + 1) ~= m[1] .. ':' then
    return false
  end
  local current = redis.call('GET', lease)
  if current then
    return current == token
  end
  return m[2] == token
end

-- Append the inbox payloads of seqs first..last, in order, to the list out, stopping
-- once they add up to budget bytes (at least one is always appended); a missing
-- payload (never expected) comes back as false. Returns out.
local function append_window(out, inbox, first, last, budget)
  if last < first then
    return out
  end
  budget = tonumber(budget or '0')
  local fields = {}
  local bytes = 0
  for s = first, last do
    if budget > 0 and #fields > 0 then
      bytes = bytes + redis.call('HSTRLEN', inbox, s)
      if bytes > budget then
        break
      end
    elseif budget > 0 then
      bytes = redis.call('HSTRLEN', inbox, s)
    end
    fields[#fields + 1] = s
  end
  local payloads = redis.call('HMGET', inbox, unpack(fields))
  for i = 1, #payloads do
    out[#out + 1] = payloads[i]
  end
  return out
end

