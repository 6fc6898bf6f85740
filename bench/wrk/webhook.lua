-- bench/wrk/webhook.lua: wrk's side of the closed-loop ingest benchmark.
--
-- Every request is a new deployment: the contract's GitHub Actions body with
-- its commit, repository and workflow run id changed each time, as
-- bench/src/load.rs does for the open loop. Run it as
--   wrk -t2 -c128 -d10s -s webhook.lua http://host/api/v1/deployments/webhook -- <key>
-- Each thread counts the statuses it was answered with; done() prints one
-- line of JSON that bench/src/wrk.rs parses: the statuses, wrk's socket
-- errors, the duration and the latency percentiles (microseconds).

local threads = {}

-- Runs once per thread, in the main Lua state, before the threads start.
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

local repos = { "acme/api", "acme/web", "acme/worker", "acme/billing", "acme/auth" }
local key = ""
local sent = 0
statuses = {}

-- Runs in each thread's own Lua state; args are what follows `--`.
function init(args)
  key = args[1] or ""
end

local function hex(n)
  return bit.tohex(bit.tobit(n), 8)
end

function request()
  sent = sent + 1
  -- id and sent make the commit unique; the rest only makes it look random.
  local sha = hex(sent) .. hex(id) .. hex(sent * 2654435761) .. hex(sent * 40503 + id * 97)
    .. hex(bit.bxor(sent, 0x5bd1e995))
  local body = '{"environment": "production", "repository": "' .. repos[(sent + id) % 5 + 1]
    .. '", "branch": "main", "commit_sha": "' .. sha
    .. '", "status": "success", "source": "github_actions", "extra_data": {"workflow_run_id": "'
    .. string.format("%d%09d", id, sent) .. '", "actor": "octocat"}}'
  return wrk.format("POST", nil, {
    ["X-Workspace-Key"] = key,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(totals) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '{"bench_wrk": 1, "duration_us": %d, "requests": %d, "statuses": {%s}, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p99": %d, "p99_9": %d, "max": %d}}\n',
    summary.duration, summary.requests, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
