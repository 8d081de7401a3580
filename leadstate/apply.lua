-- Applies one event (or one anonymous-history merge) to one lead, atomically.
-- Every key belongs to the same lead and shares its hash tag, so this runs on
-- one Redis Cluster slot.
--
-- KEYS[1] = seen set (dedup), KEYS[2] = MQL outbox hash, KEYS[3..] = model hashes
-- ARGV: dedup_id, lead_id ('' = anonymous: never an MQL), trigger_event_id,
--       n_extra_seen, extra seen ids...,
--       then per model (same order as KEYS[3..]):
--         name, half_life_ms, threshold, rearm_below, fit ('' = unchanged),
--         fit_reasons_json, fit_time_ms (0 = unknown), mql_id, n_hits,
--         then per hit: rule, points, time_ms, cap_count, cap_window_ms
-- Returns {applied (1/0), outbox as flat field/value list}.
--
-- A model hash keeps the behaviour value v at reference time t (the newest event
-- time seen) and per rule r:<rule>/rt:<rule>. Points at time te are folded in
-- commutatively: if te >= t then v = v*2^-(te-t)/hl + p, t = te, else
-- v = v + p*2^-(t-te)/hl. Any arrival order gives the same (v, t).

local function decay(dt, hl)
  if hl <= 0 or dt <= 0 then return 1 end
  return math.pow(2, -dt / hl)
end

local function add(v, t, p, te, hl)
  if te >= t then return v * decay(te - t, hl) + p, te end
  return v + p * decay(t - te, hl), t
end

local function num(x)
  return string.format('%.17g', x)
end

if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return {0, redis.call('HGETALL', KEYS[2])}
end

local lead, trigger = ARGV[2], ARGV[3]
local i = 4
local nextra = tonumber(ARGV[i]); i = i + 1
for _ = 1, nextra do
  redis.call('SADD', KEYS[1], ARGV[i]); i = i + 1
end

for k = 3, #KEYS do
  local key = KEYS[k]
  local name, hl, thr, rearm = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local fit, fitReasons, fitTime = ARGV[i + 4], ARGV[i + 5], tonumber(ARGV[i + 6])
  local mqlID, nh = ARGV[i + 7], tonumber(ARGV[i + 8])
  i = i + 9
  local st = redis.call('HMGET', key, 'v', 't', 'fit', 'mql')
  local v, t, f = tonumber(st[1]) or 0, tonumber(st[2]) or 0, tonumber(st[3]) or 0
  local mql = st[4] == '1'
  local changed = false
  for _ = 1, nh do
    local rule, p, te, capc, capw = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
    i = i + 5
    local scores = true
    if capc > 0 then
      -- Fixed event-time windows: how many hits score is order-independent.
      local w = math.floor(te / capw) * capw
      if redis.call('HINCRBY', key, 'c:' .. rule .. ':' .. w, 1) > capc then scores = false end
    end
    if scores then
      v, t = add(v, t, p, te, hl)
      local r = redis.call('HMGET', key, 'r:' .. rule, 'rt:' .. rule)
      local rv, rt = add(tonumber(r[1]) or 0, tonumber(r[2]) or 0, p, te, hl)
      redis.call('HSET', key, 'r:' .. rule, num(rv), 'rt:' .. rule, num(rt))
      changed = true
    end
  end
  if fit ~= '' then
    f = tonumber(fit)
    -- The new fit counts from its event's time: fold that time in as 0 points
    -- (commutative like any hit) so the threshold check below sees the
    -- behaviour decayed to it, and crossed_at is never before the identify.
    if fitTime > 0 then v, t = add(v, t, 0, fitTime, hl) end
    redis.call('HSET', key, 'fit', num(f), 'fitr', fitReasons)
    changed = true
  end
  if changed then
    redis.call('HSET', key, 'v', num(v), 't', num(t))
    local score = v + f
    if lead ~= '' and thr > 0 then
      if (not mql) and score >= thr then
        redis.call('HSET', key, 'mql', '1', 'mql_at', num(t), 'mql_id', mqlID)
        local reasons = {}
        local all = redis.call('HGETALL', key)
        for j = 1, #all, 2 do
          local field = all[j]
          if string.sub(field, 1, 2) == 'r:' then
            local rule = string.sub(field, 3)
            local rt = tonumber(redis.call('HGET', key, 'rt:' .. rule)) or t
            local pts = tonumber(all[j + 1]) * decay(t - rt, hl)
            if pts ~= 0 then table.insert(reasons, {rule = rule, points = pts}) end
          end
        end
        if fitReasons ~= '' and fitReasons ~= '[]' then
          for _, r in ipairs(cjson.decode(fitReasons)) do table.insert(reasons, r) end
        elseif fit == '' then
          local stored = redis.call('HGET', key, 'fitr')
          if stored and stored ~= '' and stored ~= '[]' then
            for _, r in ipairs(cjson.decode(stored)) do table.insert(reasons, r) end
          end
        end
        table.sort(reasons, function(a, b)
          if a.points ~= b.points then return a.points > b.points end
          return a.rule < b.rule
        end)
        redis.call('HSET', KEYS[2], mqlID, cjson.encode({
          mql_id = mqlID, lead_id = lead, model = name, score = num(score), threshold = num(thr),
          crossed_at_ms = num(t), trigger_event_id = trigger, reasons = reasons,
        }))
      elseif mql and score < rearm then
        redis.call('HSET', key, 'mql', '0')
      end
    end
  end
end

return {1, redis.call('HGETALL', KEYS[2])}
