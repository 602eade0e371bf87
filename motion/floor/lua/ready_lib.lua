-- ready_lib: the ready list's wake-up, shared by enqueue.lua and ready.lua (put after
-- lib.lua). A ready list (motion:ready:<queue>; used only with the broker in this Redis)
-- holds the names of idle instances with updates to apply; its counter (the list's
-- name + ':n', a string with a TTL) counts the motion.ready messages outstanding for it
-- (queued, or a task popping it). The TTL heals a count a lost message left behind.

-- The motion.ready task message (Celery protocol 2, JSON, as kombu's Redis transport
-- stores it) for the ready list `list` of `component`'s queue `queue`, built here so the
-- caller does not send it with every enqueue. Its args are [component, list].
local function ready_message(queue, list, component)
  local t = redis.call('TIME')
  local h = redis.sha1hex(list .. ':' .. t[1] .. ':' .. t[2])
  local id = string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-' .. string.sub(h, 13, 16)
    .. '-' .. string.sub(h, 17, 20) .. '-' .. string.sub(h, 21, 32)
  local j = cjson.encode
  local args = '[' .. j(component) .. ', ' .. j(list) .. ']'
  local body = '[' .. args .. ', {}, {"callbacks": null, "errbacks": null, "chain": null, '
    .. '"chord": null}]'
  local repr = "['" .. component .. "', '" .. list .. "']"
  return '{"body": ' .. j(body) .. ', "content-encoding": "utf-8", '
    .. '"content-type": "application/json", "headers": {"lang": "py", "task": "motion.ready", '
    .. '"id": "' .. id .. '", "shadow": ' .. j(component .. '.updates') .. ', "eta": null, '
    .. '"expires": null, "group": null, "group_index": null, "retries": 0, '
    .. '"timelimit": [null, null], "root_id": "' .. id .. '", "parent_id": null, '
    .. '"argsrepr": ' .. j(repr) .. ', "kwargsrepr": "{}", "origin": "motion", '
    .. '"ignore_result": true, "replaced_task_nesting": 0, "stamped_headers": null, '
    .. '"stamps": {}}, "properties": {"correlation_id": "' .. id .. '", "reply_to": null, '
    .. '"delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": ' .. j(queue)
    .. '}, "priority": 0, "body_encoding": "utf-8", "delivery_tag": "' .. id .. '"}}'
end

-- Count one more motion.ready message for `list` and push it onto the Celery queue.
local function push_ready(queue, list, component, ttl_ms)
  local n = list .. ':n'
  redis.call('INCR', n)
  redis.call('PEXPIRE', n, ttl_ms)
  redis.call('LPUSH', queue, ready_message(queue, list, component))
end
