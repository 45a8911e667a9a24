
-- sliding_window: counts of the current aligned window and the one before;
-- the estimate previous * (period - elapsed) / period + current is compared
-- multiplied out by the period. State "sw:<window_start_ms>:<previous>:<current>".
local aligned = idiv(now, period) * period
local start, previous, current = aligned, 0, 0
local s_start, s_prev, s_cur = string.match(stored, '^sw:(%d+):(%d+):(%d+)$')
if s_start then
  s_start = tonumber(s_start)
  if aligned > s_start then
    if aligned - s_start == period then
      previous = tonumber(s_cur)
    end
  else
    start, previous, current = s_start, tonumber(s_prev), tonumber(s_cur)
  end
end
local elapsed = math.min(math.max(now - start, 0), period - 1)
local left = period - elapsed
local quota = limit * period

-- used = previous * left + current * period, formed only when it cannot
-- exceed 2 * quota; beyond the quota the request is refused anyway.
local over = (previous > 0 and previous > idiv(quota, left)) or current > limit
local used = quota + 1
if not over then
  used = previous * left + current * period
end

local allowed, retry = 0, 0
local current_after = current
if not over and cost <= limit and used + cost * period <= quota then
  allowed = 1
  current_after = current + cost
  used = used + cost * period
elseif cost > limit then
  retry = period
elseif current + cost <= limit then
  -- Room in this window once the previous window's weight has decayed.
  local room = (limit - current - cost) * period
  local admit_at = period - idiv(room, math.max(previous, 1))
  retry = math.max(admit_at - elapsed, 1)
else
  -- Not before the next window, where `current` becomes the decaying part.
  local room = (limit - cost) * period
  local admit_at = 0
  if current > 0 then
    admit_at = period - math.min(idiv(room, current), period)
  end
  retry = left + admit_at
end

local reset = 0
if current_after > 0 then
  reset = period + (period - elapsed)
elseif previous > 0 then
  reset = period - elapsed
end
if allowed == 1 and cost > 0 then
  store('sw:' .. int(start) .. ':' .. int(previous) .. ':' .. int(current_after), reset)
end
return {allowed, limit, idiv(math.max(quota - used, 0), period), reset, retry}
