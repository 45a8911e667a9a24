-- wrk script of bench/ratelimit.sh: each request names one of KEYS rate-limit
-- counters in `x-key` (the route counts by that header), at random.
local keys = tonumber(os.getenv("KEYS") or "10000")
math.randomseed(os.time())
request = function()
  return wrk.format(nil, nil, { ["x-key"] = tostring(math.random(1, keys)) })
end
