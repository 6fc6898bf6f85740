-- bench/cluster.lua: the wrk script that bench/cluster runs against each
-- ingest instance.
--
-- Each wrk thread posts exactly QUOTA webhooks, every one a new deployment
-- (its own repository run, commit and run id) in a random environment out of
-- ENVS (named env-01, env-02, ...), so the records spread over the topic's
-- partitions by their key (workspace:environment). Every answer is written
-- to OUTDIR/acks-NAME-THREAD.txt as "STATUS ID" (ID is the deployment id of
-- a 201, "-" otherwise), so bench/cluster can check each acknowledged
-- webhook against the read model.
--
-- wrk cannot be told to send N requests, only to run for a time. So once a
-- thread has sent its quota it sends GET /healthz (answered 200, which a
-- webhook never is) every 200 ms per connection, and it stops as soon as
-- the last of its webhooks has been answered. No webhook is left in flight
-- unrecorded, which a stop on a count of sent requests would do. A thread's
-- stop does not end wrk before its -d duration, so bench/cluster watches the
-- files and sends wrk SIGINT (which prints its summary) once all are in.
--
-- Arguments (after wrk's "--"): KEY ENVS QUOTA OUTDIR NAME

local next_tid = 1

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

function init(args)
  key, envs, quota, outdir, name = args[1], tonumber(args[2]), tonumber(args[3]), args[4], args[5]
  sent, answered = 0, 0
  out = assert(io.open(string.format("%s/acks-%s-%d.txt", outdir, name, tid), "w"))
  -- Line-buffered: a thread that stops never closes its Lua state.
  out:setvbuf("line")
  math.randomseed(os.time() + 1000 * tid + (name == "b" and 500 or 0))
  headers = { ["X-Workspace-Key"] = key, ["Content-Type"] = "application/json" }
  health = wrk.format("GET", "/healthz")
end

local statuses = { "success", "success", "success", "success", "failed", "in_progress" }

local function hex8()
  return string.format("%08x", math.random(0, 0x7fffffff))
end

function request()
  -- wrk calls request() once in its first thread before any connection, to
  -- check the request parses; that one is never sent, so it must not count.
  if tid == 1 and not verified then
    verified = true
    return health
  end
  if sent >= quota then
    return health
  end
  sent = sent + 1
  local body = string.format(
    '{"environment":"env-%02d","repository":"org/svc-%d","branch":"main",' ..
    '"commit_sha":"%s%s%s%s%s","status":"%s","source":"github_actions",' ..
    '"extra_data":{"workflow_run_id":"%s-%d-%d","actor":"bench"}}',
    math.random(envs), math.random(20), hex8(), hex8(), hex8(), hex8(), hex8(),
    statuses[math.random(#statuses)], name, tid, sent)
  return wrk.format("POST", "/api/v1/deployments/webhook", headers, body)
end

-- After its quota a thread only waits for its last answers: one filler
-- request per connection every 200 ms, so the wait costs ingest nothing.
function delay()
  if sent >= quota then
    return 200
  end
  return 0
end

function response(status, _, body)
  if status == 200 then
    return -- a /healthz filler sent after the quota
  end
  answered = answered + 1
  local id = body:match('"id"%s*:%s*"([0-9a-f%-]+)"') or "-"
  out:write(status, " ", id, "\n")
  if answered >= quota then
    out:close()
    wrk.thread:stop()
  end
end
