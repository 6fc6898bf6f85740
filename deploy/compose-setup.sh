#!/bin/sh
# The compose `setup` service: migrations, topics, and (once) a demo
# workspace with a `production` environment and a key, printed for the
# README's curl. Idempotent: a second run only re-applies migrations and
# topic configuration.
set -eu
vibemon migrate
vibemon topics ensure
if [ -z "$(vibemon --json workspace list | grep '"name": "demo"' || true)" ]; then
  ws=$(vibemon workspace create demo)
  vibemon environment create --workspace "$ws" production > /dev/null
  key=$(vibemon key create --workspace "$ws" --name "compose demo" --scope ingest,read,admin)
  echo "Demo key (shown once): $key"
  echo "curl -X POST http://localhost:8080/api/v1/deployments/webhook -H \"X-Workspace-Key: $key\" -H 'Content-Type: application/json' -d '{\"environment\": \"production\", \"repository\": \"owner/repo\"}'"
  echo "Dashboard: http://localhost:8082 (sign in with the demo key)"
fi
