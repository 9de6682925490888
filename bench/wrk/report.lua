-- wrk: prints one machine-readable line for bench/suite.sh at the end of a run:
--   WRK <NAME> <req/s> <p50 ms> <p99 ms> <max ms> <socket errors> <non-2xx answers>
-- Used alone (`wrk -s bench/wrk/report.lua`) or loaded by the other scripts with dofile().
function report(summary, latency)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format("WRK %s %.0f %.2f %.2f %.2f %d %d\n",
    os.getenv("NAME") or "run", summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end

function done(summary, latency, requests)
  report(summary, latency)
end
