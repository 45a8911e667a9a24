
-- fixed_window: a count per window aligned to multiples of the period.
-- State "fw:<window_start_ms>:<count>".
local aligned = idiv(now, period) * period
local start, count = aligned, 0
local s_start, s_count = string.match(stored, '^fw:(%d+):(%d+)$')
if s_start and aligned <= tonumber(s_start) then
  start, count = tonumber(s_start), tonumber(s_count)
end
local to_end = period - math.min(math.max(now - start, 0), period - 1)

local allowed, retry = 0, 0
if count <= limit and cost <= limit - count then
  allowed = 1
  count = count + cost
elseif cost > limit then
  retry = period
else
  retry = to_end
end
local reset = 0
if count > 0 then
  reset = to_end
end
if allowed == 1 and cost > 0 then
  store('fw:' .. int(start) .. ':' .. int(count), reset)
end
return {allowed, limit, math.max(limit - count, 0), reset, retry}
