
-- token_bucket: tokens kept as tokens * period ("units"), so one
-- millisecond refills exactly `limit` units. State "tb:<level>:<updated_ms>:<scale>",
-- scale being the period that wrote it.
local full = capacity * period
local level, updated
local s_level, s_updated, s_scale = string.match(stored, '^tb:(%d+):(%d+):(%d+)$')
if s_level and tonumber(s_scale) > 0 then
  level, updated = tonumber(s_level), tonumber(s_updated)
  local scale = tonumber(s_scale)
  if scale ~= period then
    level = muldiv_cap(level, period, scale, full)
  else
    level = math.min(level, full)
  end
else
  level, updated = full, now
end
if now < updated then
  now = updated
end
local missing = full - level
if missing > 0 then
  -- elapsed * limit >= missing, decided without the product.
  local elapsed = now - updated
  if elapsed >= ceil_div(missing, limit) then
    level = full
  else
    level = level + elapsed * limit
  end
end

local allowed, retry = 0, 0
if cost <= capacity and cost * period <= level then
  allowed = 1
  level = level - cost * period
elseif cost > capacity then
  retry = period
else
  retry = ceil_div(cost * period - level, limit)
end
local reset = ceil_div(full - level, limit)
if allowed == 1 and cost > 0 then
  store('tb:' .. int(level) .. ':' .. int(now) .. ':' .. int(period), reset)
end
return {allowed, limit, idiv(level, period), reset, retry}
