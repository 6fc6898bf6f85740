#!/bin/bash
# Report a deployment to Vibe Monitor from any CI shell step, with curl.
#
# Run it in the checkout of what was deployed: with git and jq installed it
# also sends what changed since the previous deployment (see vm_changes
# below); without jq, or outside a git work tree, it sends the report
# without `commits` and says so. The answer (or refusal) is printed; the
# exit status is curl's, so only an unreachable API fails the step.

# Configuration
VM_API_URL="${VM_API_URL:-http://127.0.0.1:8080}"  # the local stack (deploy/local/run)
VM_WORKSPACE_KEY="${VM_WORKSPACE_KEY}"
ENVIRONMENT="${ENVIRONMENT:-production}"
REPOSITORY="${REPOSITORY}"
BRANCH="${BRANCH:-$(git rev-parse --abbrev-ref HEAD)}"
COMMIT_SHA="${COMMIT_SHA:-$(git rev-parse HEAD)}"
VM_REPO_PATH="${VM_REPO_PATH:-.}"                  # the checkout whose history is sent
VM_ENVIRONMENT="$ENVIRONMENT" VM_REPOSITORY="$REPOSITORY"

# What changed (issue #15): `previous_commit_sha` is what the read API says
# runs in the environment now; `commits` is `git log` from there to the
# reported commit, newest first, at most 250. A shallow clone is deepened
# until that commit is found; when it is not (force-push, another branch) or
# nothing is deployed yet, only the reported commit is sent, and a note says
# why. Prints a JSON object to merge into the body; fails with a reason.
vm_git() { git -C "${VM_REPO_PATH:-.}" "$@"; }
vm_log() { # <range> <max>: commits as the webhook's `commits` items
  vm_git log --max-count="$2" --format='%H%x1f%cI%x1f%aI%x1f%an%x1f%s%x1e' "$1" -- |
    jq -Rs '[split("\u001e")[] | ltrimstr("\n") | select(length > 0) | split("\u001f")
      | {sha: .[0], committed_at: .[1], authored_at: .[2],
         author: (.[3] | gsub("[\\p{Cc}\\p{Cf}\\p{Co}]"; "") | .[0:255]),
         subject: (.[4] | gsub("[\\p{Cc}\\p{Cf}\\p{Co}]"; "") | .[0:500])}
      | with_entries(select(.value != ""))]'
}
vm_deepen_until() { # <sha>: fetch more history while the clone is shallow
  for step in 50 200 1000 unshallow; do
    vm_git cat-file -e "$1^{commit}" 2>/dev/null && return 0
    [ "$(vm_git rev-parse --is-shallow-repository)" = true ] || return 1
    if [ "$step" = unshallow ]; then vm_git fetch -q --unshallow || return 1
    else vm_git fetch -q --deepen="$step" || return 1; fi
  done
  vm_git cat-file -e "$1^{commit}" 2>/dev/null
}
vm_changes() { # <head sha>
  local head=$1 answer prev commits note=""
  answer=$(curl -sS --fail --max-time 5 -G -H "X-Workspace-Key: ${VM_WORKSPACE_KEY}" \
    "${VM_API_URL%/}/api/v1/environments/${VM_ENVIRONMENT}/deployed" \
    --data-urlencode "repository=${VM_REPOSITORY}") || { echo "the read API did not answer" >&2; return 1; }
  prev=$(jq -r --arg r "$VM_REPOSITORY" \
    '.deployed[] | select(.repo_full_name == $r) | .commit_sha // empty' <<<"$answer") || return 1
  prev=$(tr 'A-F' 'a-f' <<<"$prev")
  if [ -z "$prev" ]; then
    note="nothing is deployed there yet; sending only $head"
  elif [ "$prev" != "$head" ] && ! vm_deepen_until "$prev"; then
    note="the deployed commit $prev is not in this clone's history (a force-push or another branch?); sending only $head"
  elif [ "$prev" != "$head" ]; then
    commits=$(vm_log "$prev..$head" 251) || return 1
    case $(jq length <<<"$commits") in
      0) commits=""; note="$head is an ancestor of the deployed commit $prev (a rollback?); sending only $head" ;;
      251) commits=$(jq '.[0:250]' <<<"$commits"); note="more than 250 commits since $prev; sending the newest 250" ;;
    esac
  fi
  [ -n "${commits:-}" ] || commits=$(vm_log "$head" 1) || return 1
  [ -z "$note" ] || echo "$note" >&2
  jq -n --arg prev "$prev" --argjson commits "$commits" \
    '{commits: $commits} + (if $prev == "" then {} else {previous_commit_sha: $prev} end)'
}

body="{
    \"environment\": \"${ENVIRONMENT}\",
    \"repository\": \"${REPOSITORY}\",
    \"branch\": \"${BRANCH}\",
    \"commit_sha\": \"${COMMIT_SHA}\",
    \"status\": \"success\",
    \"source\": \"webhook\"
  }"
if ! command -v jq >/dev/null; then
  echo "report-deployment: jq is not installed; sending no commits" >&2
elif ! vm_git cat-file -e "${COMMIT_SHA}^{commit}" 2>/dev/null; then
  echo "report-deployment: ${COMMIT_SHA} is not in ${VM_REPO_PATH}; sending no commits" >&2
elif changes=$(vm_changes "$(vm_git rev-parse "${COMMIT_SHA}^{commit}")"); then
  body=$(jq --argjson changes "$changes" '. + $changes' <<<"$body")
else
  echo "report-deployment: could not work out what changed; sending no commits" >&2
fi

# Report deployment
curl -sS -X POST "${VM_API_URL}/api/v1/deployments/webhook" \
  -H "X-Workspace-Key: ${VM_WORKSPACE_KEY}" \
  -H "Content-Type: application/json" \
  -d "$body"
echo
