-- lib: functions every script may use; motion/scripts.py puts this file before each
-- script's own text (after its #!lua line, if any) when it loads it.

-- Redis' clock in milliseconds: the one clock of enqueue times, ages and sweep
-- schedules, whatever the callers' and workers' clocks say.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The flow of a cancelled update's tombstone (its inbox entry is 'flow NUL', with no
-- stamp and no payload: cancel.lua), or nil for any other entry (or none).
local function tombstone_flow(entry)
  if entry and string.sub(entry, -1) == '\0' and string.find(entry, '[%z\1\2\3]') == #entry then
    return string.sub(entry, 1, #entry - 1)
  end
  return nil
end

-- The meta hash as a flat list, with Redis' clock added as the pseudo-field 'now'.
local function meta_now(meta)
  local out = redis.call('HGETALL', meta)
  out[#out + 1] = 'now'
  out[#out + 1] = tostring(now_ms())
  return out
end

-- Whether the lease is held by token, given the meta's 'inc' and 'holder' (read by the
-- caller): the token belongs to the instance's incarnation (its "<incarnation>:"
-- prefix: a token of an earlier life of the name, or a lease key copied from another
-- life, is never this life's), and the lease key says so, or the key expired (the
-- holder could not renew: an op held the GIL) but nobody took it since (the meta's
-- holder is still token). The token is what makes a commit safe; the expiry only lets
-- another worker take over.
local function holds_given(lease, inc, holder, token)
  if not inc or string.sub(token, 1, #inc + 1) ~= inc .. ':' then
    return false
  end
  local current = redis.call('GET', lease)
  if current then
    return current == token
  end
  return holder == token
end

-- holds_given, reading the meta's 'inc' and 'holder' itself.
local function holds(lease, meta, token)
  local m = redis.call('HMGET', meta, 'inc', 'holder')
  return holds_given(lease, m[1], m[2], token)
end

-- Append the inbox payloads of seqs first..last, in order, to the list out, stopping
-- once they add up to budget bytes (at least one is always appended); a missing
-- payload (never expected) comes back as false. Returns out. Read by HMGET in chunks
-- (16, 32, 64 ...): one command for a short window, and at most one chunk read past
-- the budget.
local function append_window(out, inbox, first, last, budget)
  budget = tonumber(budget or '0')
  local bytes, taken, s, chunk = 0, 0, first, 16
  while s <= last do
    local hi = math.min(last, s + chunk - 1)
    local fields = {}
    for x = s, hi do
      fields[#fields + 1] = x
    end
    local got = redis.call('HMGET', inbox, unpack(fields))
    for x = 1, #got do
      local p = got[x]
      if budget > 0 then
        bytes = bytes + (p and #p or 0)
        if taken > 0 and bytes > budget then
          return out
        end
      end
      out[#out + 1] = p
      taken = taken + 1
    end
    s, chunk = hi + 1, math.min(chunk * 2, 1000)
  end
  return out
end
