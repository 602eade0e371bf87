-- history: what the commit script records besides the state (put after lib.lua, before
-- commit.lua, by motion/floor/scripts.py). See motion/floor/history.py for the formats.

-- One record per version this commit makes, newest first in the list hkey, at most
-- argv[i] kept. A record keeps, per changed field, its value BEFORE that version (read
-- here, before the commit writes; false when it was absent), so any kept version is
-- rebuilt by walking back from the current state. argv[i + 2] records follow, each:
-- header (JSON), n, n field names, c, c (field, value) pairs: this version's own new
-- values of fields a later version of the same commit changes again.
-- Record: "inc\nversion\nat\nnonce\nlens\nheader" then the bytes of name, value, name,
-- value...; lens is "namelen:valuelen,..." (valuelen -1: the field was absent).
-- version: the meta's version before this commit; at: Redis' clock (ms).
local function record_history(hkey, state, argv, i, replace, nonce, inc, version, at)
  local cap = tonumber(argv[i])
  local n = tonumber(argv[i + 2])
  if cap == 0 or n == 0 then
    return
  end
  local cur = {}
  local old = {}
  if replace then
    local flat = redis.call('HGETALL', state)
    for x = 1, #flat, 2 do
      old[#old + 1] = flat[x]
      cur[flat[x]] = flat[x + 1]
    end
  end
  local j = i + 3
  for r = 1, n do
    local header = argv[j]
    local nk = tonumber(argv[j + 1])
    j = j + 2
    local names, seen = {}, {}
    for x = 1, nk do
      names[x] = argv[j + x - 1]
      seen[names[x]] = true
    end
    j = j + nk
    for _, f in ipairs(old) do
      if not seen[f] then
        names[#names + 1] = f
      end
    end
    local missing = {}
    for _, f in ipairs(names) do
      if cur[f] == nil then
        missing[#missing + 1] = f
      end
    end
    for lo = 1, #missing, 1000 do  -- (unpack's stack is bounded)
      local hi = math.min(lo + 999, #missing)
      local got = replace and {} or redis.call('HMGET', state, unpack(missing, lo, hi))
      for x = lo, hi do
        cur[missing[x]] = got[x - lo + 1] or false
      end
    end
    local lens, parts = {}, {}
    for x, f in ipairs(names) do
      local v = cur[f]
      parts[#parts + 1] = f
      if v then
        parts[#parts + 1] = v
        lens[x] = #f .. ':' .. #v
      else
        lens[x] = #f .. ':-1'
      end
    end
    local nc = tonumber(argv[j])
    for x = 1, nc do
      cur[argv[j + 2 * x - 1]] = argv[j + 2 * x]
    end
    j = j + 2 * nc + 1
    local tail = (r == n) and nonce or ''  -- the tag's nonce: the last version's tag has one
    local head = table.concat({inc, version + r, at, tail, table.concat(lens, ','), header}, '\n')
    redis.call('LPUSH', hkey, head .. '\n' .. table.concat(parts))
  end
  redis.call('LTRIM', hkey, 0, cap - 1)
end

-- With argv[i + 1] = N > 0, keep the payloads (still in the inbox) of the updates this
-- commit applies (c: {first, last, keep, released}: first..last but the parked ones in
-- keep, then the released ones) in log1, in that order, and, each time log1 holds N,
-- start a new generation: log1 and base1 become log0 and base0 and base1 is a copy of
-- the state before this commit. So at least the last N applied updates are kept (at
-- most 2N plus one commit's), with the exact state before the oldest of them.
-- r: the meta, base0, base1, log0, log1 keys.
local function retain_updates(r, inbox, state, argv, i, c, inc)
  local cap = tonumber(argv[i + 1])
  if cap == 0 then
    return
  end
  local seqs = {}
  for s = c[1], c[2] do
    if not c[3][tostring(s)] then
      seqs[#seqs + 1] = s
    end
  end
  for _, p in ipairs(c[4]) do
    if not c[3][p[1]] then
      seqs[#seqs + 1] = tonumber(p[1])
    end
  end
  if #seqs == 0 then
    return
  end
  local started = redis.call('HGET', r[1], 'first1')
  if not started or redis.call('LLEN', r[5]) >= cap then
    redis.call('DEL', r[2], r[4])
    if started then
      if redis.call('EXISTS', r[3]) == 1 then
        redis.call('RENAME', r[3], r[2])
      end
      if redis.call('EXISTS', r[5]) == 1 then
        redis.call('RENAME', r[5], r[4])
      end
      redis.call('HSET', r[1], 'first0', started)
    else
      redis.call('HDEL', r[1], 'first0')
    end
    redis.call('DEL', r[3], r[5])
    redis.call('COPY', state, r[3])
    redis.call('HSET', r[1], 'first1', seqs[1], 'inc', inc)
  end
  local items = {}
  for x, s in ipairs(seqs) do
    items[#items + 1] = s .. '\n' .. (redis.call('HGET', inbox, s) or '')
    if #items == 1000 or x == #seqs then
      redis.call('RPUSH', r[5], unpack(items))
      items = {}
    end
  end
end
