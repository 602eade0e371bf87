-- alive: how long ago a worker able to apply a component's updates announced itself.
-- KEYS[1] motion:workers:{<Component>}
-- Returns the age in ms of the newest heartbeat (Redis' clock), or -1 if none is known.
local newest = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #newest == 0 then
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return now - tonumber(newest[2])
