-- wrk script for bench/run.sh: POSTs the same OIP v2 JSON body (batch 1) on every request and,
-- at the end, prints one machine-readable line that run.sh parses.
--
-- BENCH_BODY names the file holding the body (run.sh generates it once). wrk runs this file in
-- every thread's Lua state and once more for `done`, so the body is read per thread, not per
-- request. Without BENCH_BODY the script sends plain GETs (run.sh uses that to measure the
-- HTTP floor on /v2/health/live). With BENCH_HEADER_LENGTH the body is in the binary tensor data
-- extension: its first BENCH_HEADER_LENGTH bytes are the JSON header, announced in the
-- Inference-Header-Content-Length header, the rest raw tensor data.

local path = os.getenv("BENCH_BODY")
if path and path ~= "" then
  local file = assert(io.open(path, "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  local header_length = os.getenv("BENCH_HEADER_LENGTH")
  if header_length and header_length ~= "" then
    wrk.headers["Content-Type"] = "application/octet-stream"
    wrk.headers["Inference-Header-Content-Length"] = header_length
  else
    wrk.headers["Content-Type"] = "application/json"
  end
end

-- No `response` callback on purpose: defining one makes wrk hand every response to Lua, which
-- costs client CPU on a machine that the server shares. wrk itself counts answers with a status
-- of 400 or more in errors.status; run.sh fails the run when it is not zero.

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.status,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
