-- edgegate rate limiting on Redis: shared prelude of the four algorithm
-- scripts (each script is this prelude followed by its algorithm).
--
-- KEYS[1]  the counter's key
-- ARGV[1]  limit: requests per period (>= 1)
-- ARGV[2]  period in milliseconds (>= 1)
-- ARGV[3]  capacity: burst for token_bucket and gcra, else the limit
-- ARGV[4]  cost of this request (1; 0 only peeks)
-- ARGV[5]  optional, for tests only: the current time in ms since the Unix
--          epoch. Without it the script reads the server clock (TIME), so
--          the clocks of the edges do not matter. With it, the key's TTL is
--          a day longer, because Redis expires keys by its own clock and a
--          simulated sequence must not lose state to real time passing.
--
-- Returns {allowed (0 or 1), limit, remaining, reset_ms, retry_after_ms},
-- the same decision as the Rust function of the algorithm
-- (durable-objects/src/algorithms).
--
-- Redis runs Lua 5.1: every number is a double, exact for integers up to
-- 2^53. The configuration keeps max(limit, capacity) * period_ms <= 2^51
-- (UPSTASH_MAX_LIMIT_PERIOD_MS) and times are below 2^53, so each sum and
-- product below stays exact; the two products that can exceed that
-- (elapsed * limit, and rescaling a state written under another policy)
-- are compared or computed without forming them. Only division rounds, so
-- it goes through idiv.

local TWO_52 = 4503599627370496
local TEST_TTL_SLACK_MS = 86400000

-- floor(a / b) for integers a >= 0, b > 0: the rounded double quotient may
-- land on the next integer, so it is corrected by the remainder.
local function idiv(a, b)
  local q = math.floor(a / b)
  local r = a - q * b
  if r < 0 then
    q = q - 1
  elseif r >= b then
    q = q + 1
  end
  return q
end

-- ceil(a / b) for integers a >= 0, b > 0.
local function ceil_div(a, b)
  local q = idiv(a, b)
  if q * b < a then
    q = q + 1
  end
  return q
end

-- min(floor(a * b / c), cap) for integers 0 <= a, b < 2^53, 0 < c <= 2^52,
-- cap <= 2^52, without forming a * b when it is not exact.
local function muldiv_cap(a, b, c, cap)
  if a * b < 2 * TWO_52 then
    return math.min(idiv(a * b, c), cap)
  end
  local qa = idiv(a, c)
  local ra = a - qa * c
  if qa >= ceil_div(cap, b) then
    return cap
  end
  -- floor(ra * b / c) by binary long division over the bits of b; the
  -- remainder stays below 2c <= 2^53.
  local q, r, rest, bit = 0, 0, b, TWO_52
  while bit >= 1 do
    q, r = q * 2, r * 2
    if r >= c then
      q, r = q + 1, r - c
    end
    if rest >= bit then
      rest = rest - bit
      r = r + ra
      if r >= c then
        q, r = q + 1, r - c
      end
    end
    bit = bit / 2
  end
  return math.min(qa * b + q, cap)
end

-- Arguments (the helpers above are tested on their own up to this line).
local function arg_int(i)
  local v = tonumber(ARGV[i])
  if v == nil or v < 0 or v ~= math.floor(v) or v >= 2 * TWO_52 then
    return nil
  end
  return v
end

local limit, period, capacity, cost = arg_int(1), arg_int(2), arg_int(3), arg_int(4)
if not (limit and period and capacity and cost) or limit < 1 or period < 1 or capacity < 1 then
  return redis.error_reply('ERR edgegate: bad arguments')
end
local now, ttl_slack
if ARGV[5] then
  now, ttl_slack = arg_int(5), TEST_TTL_SLACK_MS
  if not now then
    return redis.error_reply('ERR edgegate: bad now_ms')
  end
else
  local t = redis.call('TIME')
  now, ttl_slack = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 0
end

-- Integers as decimal text: tostring() would switch to exponents past 1e14.
local function int(v)
  return string.format('%.0f', v)
end

-- Stores the state until `ttl_ms` from now, when it means the same as no
-- state at all (the decision's reset_ms).
local function store(value, ttl_ms)
  redis.call('SET', KEYS[1], value, 'PX', int(math.max(ttl_ms, 1) + ttl_slack))
end

local stored = redis.call('GET', KEYS[1])
if type(stored) ~= 'string' then
  stored = ''
end
