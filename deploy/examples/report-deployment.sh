#!/bin/bash
# Report a deployment to Vibe Monitor from any CI shell step, with curl.
#
# Run it in the checkout of what was deployed: with git and jq installed it
# also sends what changed since the previous deployment (see vm_changes
# below); without jq, or outside a git work tree, it sends the report
# without `commits` and says so. A 422 for a report with `commits` is
# followed by the same report without them, once, saying so on stderr. The
# answer (or refusal) is printed; the exit status is curl's, so only an
# unreachable API fails the step.

set -o pipefail

# Configuration
VM_API_URL="${VM_API_URL:-http://127.0.0.1:8080}"  # the local stack (deploy/local/run)
VM_WORKSPACE_KEY="${VM_WORKSPACE_KEY}"
ENVIRONMENT="${ENVIRONMENT:-production}"
REPOSITORY="${REPOSITORY}"
VM_REPO_PATH="${VM_REPO_PATH:-.}"                  # the checkout whose history is sent
BRANCH="${BRANCH:-$(git -C "$VM_REPO_PATH" rev-parse --abbrev-ref HEAD)}"
COMMIT_SHA="${COMMIT_SHA:-$(git -C "$VM_REPO_PATH" rev-parse HEAD)}"
VM_ENVIRONMENT="$ENVIRONMENT" VM_REPOSITORY="$REPOSITORY"

# What changed (issue #15): `previous_commit_sha` is what the read API says
# runs in the environment now; `commits` is `git log` from there to the
# reported commit, newest first, at most 100 (author cut to 64, subject to
# 100 characters, invisible characters dropped), as `vibemon report` does. A
# shallow clone has the reported commit's history deepened (no tags; 50, 200
# then 1000 commits) until the deployed commit is an ancestor and the range
# crosses no shallow boundary. Otherwise (nothing deployed yet, a rollback, a
# force-push, a failed fetch) only the reported commit is sent, and a note
# says why. Each git process is killed after 30 s (with `timeout`). Prints a
# JSON object to merge into the body; fails with a reason.
vm_git() {
  if command -v timeout >/dev/null; then
    GIT_TERMINAL_PROMPT=0 timeout 30 git -C "${VM_REPO_PATH:-.}" "$@"
  else
    GIT_TERMINAL_PROMPT=0 git -C "${VM_REPO_PATH:-.}" "$@"
  fi
}
vm_log() { # <range> <max>: commits as the webhook's `commits` items
  local out status
  # NUL-separated fields and commits (NUL cannot occur in commit text), kept
  # in a file: a command substitution would drop the NULs.
  out=$(mktemp) || return 1
  vm_git log -z --no-show-signature --max-count="$2" \
    --format='%H%x00%cI%x00%aI%x00%an%x00%s' "$1" -- >"$out" || { rm -f "$out"; return 1; }
  jq -Rs 'def clean($n): gsub("[\\p{Cc}\\p{Cf}\\p{Co}]"; "")
      | sub("^\\s+"; "") | .[0:$n] | sub("\\s+$"; "");
    rtrimstr("\u0000") | if . == "" then [] else split("\u0000") end
    | [range(0; length; 5) as $i | .[$i:$i + 5]
      | {sha: .[0], committed_at: .[1], authored_at: .[2],
         author: (.[3] | clean(64)), subject: (.[4] | clean(100))}
      | with_entries(select(.value != ""))]' <"$out"
  status=$?
  rm -f "$out"
  return $status
}
vm_cut() { # <prev> <head>: whether prev..head reaches a shallow commit
  local file out
  file=$(vm_git rev-parse --git-path shallow) || return 0
  case $file in /*) ;; *) file="${VM_REPO_PATH:-.}/$file" ;; esac
  [ -s "$file" ] || return 1
  out=$(vm_git log --boundary --format=%H "$1..$2" --) || return 0
  tr -d '-' <<<"$out" | grep -qxFf "$file"
}
vm_changes() { # <head sha>
  local head=$1 answer prev commits="" note="" found="" shallow step
  answer=$(curl -sS --fail --max-time 5 -G -H "X-Workspace-Key: ${VM_WORKSPACE_KEY}" \
    "${VM_API_URL%/}/api/v1/environments/${VM_ENVIRONMENT}/deployed" \
    --data-urlencode "repository=${VM_REPOSITORY}") || { echo "the read API did not answer" >&2; return 1; }
  prev=$(jq -r --arg r "$VM_REPOSITORY" \
    '[.deployed[] | select(.repo_full_name == $r) | .commit_sha // empty][0] // empty' <<<"$answer") || return 1
  prev=$(tr 'A-F' 'a-f' <<<"$prev")
  if [ -n "$prev" ] && ! [[ $prev =~ ^[0-9a-f]{40}$ ]]; then
    echo "the read API's commit_sha is not 40 hex digits" >&2
    return 1
  fi
  if [ -z "$prev" ]; then
    note="nothing is deployed there yet; sending only $head"
  elif [ "$prev" != "$head" ]; then
    for step in 0 50 200 1000; do
      if [ "$step" != 0 ] && ! vm_git fetch -q --no-tags --deepen="$step" origin "$head"; then
        note="cannot deepen this shallow clone to find the deployed commit $prev; sending only $head"
        break
      fi
      shallow=$(vm_git rev-parse --is-shallow-repository) || shallow=true
      if vm_git cat-file -e "$prev^{commit}" 2>/dev/null; then
        if vm_git merge-base --is-ancestor "$prev" "$head"; then
          if [ "$shallow" != true ] || ! vm_cut "$prev" "$head"; then found=1; break; fi
        elif [ "$shallow" != true ]; then
          if vm_git merge-base --is-ancestor "$head" "$prev"; then
            note="$head is an ancestor of the deployed commit $prev (a rollback); sending only $head"
          else
            note="the deployed commit $prev is not an ancestor of $head (a force-push or another branch?); sending only $head"
          fi
          break
        fi
      elif [ "$shallow" != true ]; then
        note="the deployed commit $prev is not in this clone's history (a force-push or another branch?); sending only $head"
        break
      fi
      [ "$step" != 1000 ] || note="the commits since the deployed commit $prev are not within 1250 commits of this shallow clone; sending only $head"
    done
  fi
  if [ -n "$found" ]; then
    commits=$(vm_log "$prev..$head" 251) || return 1
    if [ "$(jq length <<<"$commits")" = 251 ]; then
      commits=$(jq '.[0:100]' <<<"$commits")
      note="more than 100 commits since $prev; sending the newest 100"
    fi
  fi
  [ -n "$commits" ] || commits=$(vm_log "$head" 1) || return 1
  [ -z "$note" ] || echo "$note" >&2
  jq -n --arg prev "$prev" --argjson commits "$commits" \
    '{commits: $commits} + (if $prev == "" then {} else {previous_commit_sha: $prev} end)'
}

if command -v jq >/dev/null; then
  # jq escapes whatever the branch or repository names hold.
  body=$(jq -n --arg environment "$ENVIRONMENT" --arg repository "$REPOSITORY" \
    --arg branch "$BRANCH" --arg commit_sha "$COMMIT_SHA" \
    '{environment: $environment, repository: $repository, branch: $branch,
      commit_sha: $commit_sha, status: "success", source: "webhook"}')
  if ! vm_git cat-file -e "${COMMIT_SHA}^{commit}" 2>/dev/null; then
    echo "report-deployment: ${COMMIT_SHA} is not in ${VM_REPO_PATH}; sending no commits" >&2
  elif changes=$(vm_changes "$(vm_git rev-parse "${COMMIT_SHA}^{commit}")"); then
    body=$(jq --argjson changes "$changes" '. + $changes' <<<"$body")
  else
    echo "report-deployment: could not work out what changed; sending no commits" >&2
  fi
else
  echo "report-deployment: jq is not installed; sending no commits" >&2
  body="{
    \"environment\": \"${ENVIRONMENT}\",
    \"repository\": \"${REPOSITORY}\",
    \"branch\": \"${BRANCH}\",
    \"commit_sha\": \"${COMMIT_SHA}\",
    \"status\": \"success\",
    \"source\": \"webhook\"
  }"
fi

# Report deployment; the exit status is curl's.
answer=$(mktemp)
vm_post() { # <body>: prints the HTTP status, keeps the answer in $answer
  curl -sS -X POST "${VM_API_URL}/api/v1/deployments/webhook" \
    -H "X-Workspace-Key: ${VM_WORKSPACE_KEY}" \
    -H "Content-Type: application/json" \
    -o "$answer" -w '%{http_code}' \
    -d "$1"
}
code=$(vm_post "$body")
status=$?
# A 422 refuses the whole report: what changed must not cost it (an ingest
# not yet accepting `commits`, or a commit it finds invalid). Once, as
# `vibemon report` and the GitHub action do.
if [ "$status" = 0 ] && [ "$code" = 422 ] \
  && jq -e 'has("commits") or has("previous_commit_sha")' <<<"$body" >/dev/null 2>&1; then
  echo "report-deployment: the report with commits was refused (HTTP 422): $(cat "$answer"); sending it again without them" >&2
  body=$(jq 'del(.commits, .previous_commit_sha)' <<<"$body")
  code=$(vm_post "$body")
  status=$?
fi
cat "$answer"
echo
rm -f "$answer"
exit "$status"
