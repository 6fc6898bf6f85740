#!/bin/bash

# Configuration
VM_API_URL="${VM_API_URL:-http://127.0.0.1:8080}"  # the local stack (deploy/local/run)
VM_WORKSPACE_KEY="${VM_WORKSPACE_KEY}"
ENVIRONMENT="${ENVIRONMENT:-production}"
REPOSITORY="${REPOSITORY}"
BRANCH="${BRANCH:-$(git rev-parse --abbrev-ref HEAD)}"
COMMIT_SHA="${COMMIT_SHA:-$(git rev-parse HEAD)}"

# Report deployment
curl -X POST "${VM_API_URL}/api/v1/deployments/webhook" \
  -H "X-Workspace-Key: ${VM_WORKSPACE_KEY}" \
  -H "Content-Type: application/json" \
  -d "{
    \"environment\": \"${ENVIRONMENT}\",
    \"repository\": \"${REPOSITORY}\",
    \"branch\": \"${BRANCH}\",
    \"commit_sha\": \"${COMMIT_SHA}\",
    \"status\": \"success\",
    \"source\": \"webhook\"
  }"
