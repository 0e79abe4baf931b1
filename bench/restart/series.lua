-- wrk script of the restart benchmark: counts the replies of each wall-clock
-- second, 2xx and other, in every thread, and at the end prints one line
-- "RESULT {json}" with wrk's own totals and the per-second series.
-- (wrk's scripting API: setup, response and done; thread:get copies a
-- thread's global into the main state.)

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

ok = {}
bad = {}

function response(status, headers, body)
  local s = os.time()
  if status >= 200 and status < 300 then
    ok[s] = (ok[s] or 0) + 1
  else
    bad[s] = (bad[s] or 0) + 1
  end
end

local function merge(into, from)
  for k, v in pairs(from or {}) do
    into[k] = (into[k] or 0) + v
  end
end

function done(summary, latency, requests)
  local okAll, badAll = {}, {}
  for _, t in ipairs(threads) do
    merge(okAll, t:get("ok"))
    merge(badAll, t:get("bad"))
  end
  local first, last
  for k in pairs(okAll) do
    if not first or k < first then first = k end
    if not last or k > last then last = k end
  end
  for k in pairs(badAll) do
    if not first or k < first then first = k end
    if not last or k > last then last = k end
  end
  local okS, badS = {}, {}
  if first then
    for s = first, last do
      table.insert(okS, tostring(okAll[s] or 0))
      table.insert(badS, tostring(badAll[s] or 0))
    end
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d,' ..
    '"lat_p50_us":%d,"lat_p99_us":%d,"lat_max_us":%d,"series_start":%d,"ok_per_s":[%s],"bad_per_s":[%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.max, first or 0,
    table.concat(okS, ","), table.concat(badS, ",")))
end
