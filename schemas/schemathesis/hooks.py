"""Hooks for schemathesis/run: they keep generated requests within the rules
the OpenAPI document states in words because JSON Schema cannot state them,
and nothing else. Each rule is relative to the clock or between values:

- the webhook's deployed_at may be at most the allowed clock skew (5 minutes)
  ahead of the server's clock: a schema is fixed, the clock is not;
- no sha twice in commits: uniqueItems compares whole commit objects, not
  one property of them;
- a history cursor is one this API returned (its alphabet is stated, its
  content is the server's encoding);
- an Idempotency-Key once used is bound to its body: the same key with
  another body is a 422 (idempotency_key_reused), state of the server that
  no schema holds;
- a DORA window has since before until and at most 1000 buckets: a relation
  between parameters.

Each hook rewrites only a value the document calls valid, into another valid
value that also meets the rule, so a negative case (one the document calls
invalid) stays invalid and must still be refused. Everything else the
document states is tested as generated.
"""

import base64
import hashlib
import json
import re
from datetime import datetime, timedelta, timezone

import schemathesis

WEBHOOK = "/api/v1/deployments/webhook"
HISTORY = "/api/v1/deployments"
DORA = "/api/v1/metrics/dora"

SHA = re.compile(r"[0-9a-fA-F]{40}\Z")
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}\Z")
CURSOR = re.compile(r"[A-Za-z0-9_-]+\Z")
# The earliest and latest instants the document allows (1970 to 9999).
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse(value):
    """An RFC 3339 timestamp as an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


def rfc3339(t):
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def webhook(body):
    if not isinstance(body, dict):
        return body
    deployed_at = parse(body.get("deployed_at"))
    now = datetime.now(timezone.utc)
    if deployed_at is not None and deployed_at > now:
        # A valid time in the future: the same valid shape, now.
        body["deployed_at"] = rfc3339(now - timedelta(minutes=1))
    commits = body.get("commits")
    if isinstance(commits, list):
        seen = set()
        for i, commit in enumerate(commits):
            sha = commit.get("sha") if isinstance(commit, dict) else None
            if not isinstance(sha, str) or not SHA.match(sha):
                continue
            n = 0
            while sha.lower() in seen:
                # Another valid sha: the index and a counter, in hex.
                sha = f"{i:020x}{n:020x}"
                n += 1
            commit["sha"] = sha
            seen.add(sha.lower())
    return body


def idempotency_key(headers, body):
    """A valid key made unique to the body: the same body keeps its key (a
    retry), another body gets another key (a new report)."""
    key = headers.get("Idempotency-Key")
    if not isinstance(key, str) or not IDEMPOTENCY_KEY.match(key):
        return headers
    digest = hashlib.sha256(json.dumps([key, body], sort_keys=True, default=repr).encode()).hexdigest()
    headers["Idempotency-Key"] = f"{key[:190]}-{digest[:64]}"
    return headers


def history(query):
    cursor = query.get("cursor")
    if isinstance(cursor, str) and 0 < len(cursor) <= 1024 and CURSOR.match(cursor):
        # One the API could have returned: microseconds|deployment id.
        raw = f"{len(cursor) * 1_000_000}|00000000-0000-7000-8000-{len(cursor):012x}"
        query["cursor"] = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    return query


BUCKET_DAYS = {"day": 1, "week": 7, "month": 31}
LATEST = datetime(9999, 12, 31, tzinfo=timezone.utc)


def dora(query):
    since, until = parse(query.get("since")), parse(query.get("until"))
    if ("since" in query and since is None) or ("until" in query and until is None):
        return query  # not a valid timestamp: a negative case, left as it is
    bucket = query.get("bucket", "week")
    if not isinstance(bucket, str) or bucket not in BUCKET_DAYS:
        return query
    end = until or datetime.now(timezone.utc)
    start = since or end - timedelta(days=30)
    # At most 1000 buckets, counted from the start of since's bucket.
    if start < end and end - start <= timedelta(days=BUCKET_DAYS[bucket] * 990):
        return query
    # A one-day window around the instant given, within the valid years.
    anchor = min(max(since or until, EPOCH + timedelta(days=1)), LATEST - timedelta(days=1))
    query["since"] = rfc3339(anchor - timedelta(hours=12))
    query["until"] = rfc3339(anchor + timedelta(hours=12))
    return query


@schemathesis.hook
def map_case(context, case):
    path, method = case.operation.path, case.method.upper()
    if path == WEBHOOK and method == "POST":
        case.body = webhook(case.body)
        if case.headers is not None:
            case.headers = idempotency_key(case.headers, case.body)
    elif path == HISTORY and method == "GET" and isinstance(case.query, dict):
        case.query = history(case.query)
    elif path == DORA and method == "GET" and isinstance(case.query, dict):
        case.query = dora(case.query)
    return case
