
-- gcra: time in ticks of 1/limit ms, so the emission interval is `period`
-- ticks. State "gc:<tat_ms>:<tat_frac>:<scale>", the theoretical arrival
-- time tat_ms + tat_frac / scale, scale being the limit that wrote it.
-- Everything is computed relative to the effective now E = max(now, TAT -
-- tolerance), so absolute tick counts (now_ms * limit) never appear.
local tolerance = capacity * period
local tat_ms, tat_frac = 0, 0
local s_ms, s_frac, s_scale = string.match(stored, '^gc:(%d+):(%d+):(%d+)$')
if s_ms and tonumber(s_scale) > 0 then
  tat_ms, tat_frac = tonumber(s_ms), tonumber(s_frac)
  local scale = tonumber(s_scale)
  if scale ~= limit then
    tat_frac = muldiv_cap(tat_frac, limit, scale, limit)
  end
end

-- used: max(TAT, E) - E in ticks; base: max(TAT, E) as (ms, ticks).
local used, base_ms, base_frac
if tat_ms < now then
  used, base_ms, base_frac = 0, now, 0
else
  local ahead_ms = tat_ms - now
  if ahead_ms > idiv(tolerance, limit) + 1 then
    used = tolerance
  else
    used = math.min(ahead_ms * limit + tat_frac, tolerance)
  end
  base_ms, base_frac = tat_ms, tat_frac
end

local allowed, retry = 0, 0
local increment = cost * period
if cost <= capacity and used + increment <= tolerance then
  allowed = 1
  used = used + increment
elseif cost > capacity then
  retry = period
else
  retry = ceil_div(used + increment - tolerance, limit)
end
local reset = ceil_div(used, limit)
if allowed == 1 and cost > 0 then
  local ticks = base_frac + increment
  local carry = idiv(ticks, limit)
  store('gc:' .. int(base_ms + carry) .. ':' .. int(ticks - carry * limit) .. ':' .. int(limit), reset)
end
return {allowed, limit, idiv(tolerance - used, period), reset, retry}
