-- lib: functions every script may use; motion/scripts.py puts this file before each
-- script's own text when it loads it.

-- Append the inbox payloads of seqs first..last, in order, to the list out (a
-- missing payload, never expected, comes back as false); returns out.
local function append_window(out, inbox, first, last)
  if last < first then
    return out
  end
  local fields = {}
  for s = first, last do
    fields[#fields + 1] = s
  end
  local payloads = redis.call('HMGET', inbox, unpack(fields))
  for i = 1, #payloads do
    out[#out + 1] = payloads[i]
  end
  return out
end

