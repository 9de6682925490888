-- wrk script: POST /user/<PREFIX><n>/activities for a random n in [0, USERS), or with
-- PREVIEW=1 POST /preview/activities (the non-durable route) with the same body.
-- Counts, per user, the requests sent, and writes them with the run's totals to SENT (a file of
-- "user count" lines, then "total sent N"): bench/wrk/verify.py then checks every worker's own
-- count against them (see there for what that proves). Environment: USERS (default 1000), PREFIX
-- (default "w"), SENT (default: nothing written).
--   USERS=10000 PREFIX=c SENT=/tmp/sent wrk -t2 -c64 -d10s -s bench/wrk/activity.lua http://127.0.0.1:8080
local users = tonumber(os.getenv("USERS") or "1000")
local prefix = os.getenv("PREFIX") or "w"
local preview = os.getenv("PREVIEW") == "1"
local threads = {}
dofile("bench/wrk/report.lua")

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

-- Each thread has its own Lua state: its own generator, requests and counts.
local requests = {}
sent = {}

function init(args)
  math.randomseed(id * 7919 + os.time())
  local headers = { ["Content-Type"] = "application/json" }
  local body = '{"kind":"bench","detail":"wrk"}'
  for n = 1, users do
    -- Formatted once: request() only picks one, so the script costs wrk little.
    local path = preview and "/preview/activities" or ("/user/" .. prefix .. (n - 1) .. "/activities")
    requests[n] = wrk.format("POST", path, headers, body)
    sent[n] = 0
  end
end

function request()
  local n = math.random(1, users)
  sent[n] = sent[n] + 1
  return requests[n]
end

function done(summary, latency, requests)
  report(summary, latency)
  local path = os.getenv("SENT")
  if not path then return end
  local totals = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("sent")
    for n = 1, users do totals[n] = (totals[n] or 0) + counts[n] end
  end
  local out = assert(io.open(path, "w"))
  local all = 0
  for n = 1, users do
    out:write(prefix .. (n - 1) .. " " .. totals[n] .. "\n")
    all = all + totals[n]
  end
  out:write("total sent " .. all .. "\n")
  local e = summary.errors
  out:write("total answered " .. summary.requests .. "\n")
  out:write("errors connect " .. e.connect .. " read " .. e.read .. " write " .. e.write ..
            " status " .. e.status .. " timeout " .. e.timeout .. "\n")
  out:close()
end
