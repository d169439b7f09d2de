-- wrk script for HTTP single-key GETs: cycles through pre-formatted requests over the key space and
-- prints a machine-readable summary line (WRKJSON {...}) with latency percentiles in microseconds.
local keys = tonumber(os.getenv("KV_KEYS") or "10000")
local prefix = os.getenv("KV_PREFIX") or "k100"
-- webdis reads a key as /GET/{key}.bin (raw bytes); kvgate and the naive gateways as /v1/kv/{key}
local path = os.getenv("KV_PATH") or "/v1/kv/"
local suffix = os.getenv("KV_SUFFIX") or ""
local reqs = {}
local n = 0

init = function(args)
  local seed = math.random(0, 1000000)
  for i = 1, 4096 do
    local k = (seed + i * 7919) % keys
    reqs[i] = wrk.format("GET", path .. prefix .. ":" .. k .. suffix)
  end
end

request = function()
  n = n + 1
  if n > #reqs then n = 1 end
  return reqs[n]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
