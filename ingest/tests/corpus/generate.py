#!/usr/bin/env python3
"""Writes hostile.jsonl: the hostile-request corpus replayed by
ingest/tests/it/hostile.rs. Each line is one request and the status it must
get. Regenerate with `python3 ingest/tests/corpus/generate.py`; the output is
committed so the corpus is data in the repository, reviewed like code.

Fields: name, expect (status), content_type (null = no header), key
("valid" | "none" | a literal), and one of body (text), body_b64 (raw
bytes), or body_bytes (size of a generated body, for 1 MB / 100 MB).
Optional: method and path (default POST to the webhook; the path may carry a
query string), headers (extra [name, value] pairs). A case with raw_b64 is a
whole HTTP/1.1 request sent over TCP as it is (`{KEY}` becomes the tenant's
key): for what an HTTP client refuses to send, such as non-UTF-8 or
duplicate headers and Content-Length beside Transfer-Encoding.

Native intake (POST /api/v1/integrations/{github,gitlab}/{id}): the runner
creates one live and one revoked receiver of each provider, and resolves in
path, header values, token and raw requests the placeholders {github},
{gitlab}, {github_revoked} and {gitlab_revoked} (the receivers' ids; in the
token, their secrets) and {GITHUB} (the GitHub id in upper case). Optional:
sign (whose secret signs X-Hub-Signature-256: a placeholder or a literal
wrong secret), signature (its format, default "sha256={hex}"; {HEX} is the
upper-case digest), signed_body (sign this text instead of the body sent),
and token (X-Gitlab-Token). In a raw request {gitlab_token} is the GitLab
receiver's secret and {GITHUB_SIGNATURE} the GitHub receiver's signature of
the raw body."""

import base64
import json
from pathlib import Path

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
cases = []


def add(name, expect, body=None, *, raw=None, size=None, content_type="application/json", key="valid",
        method=None, path=None, headers=None, sign=None, signature=None, signed_body=None, token=None):
    c = {"name": name, "expect": expect, "content_type": content_type, "key": key}
    for field, value in [("sign", sign), ("signature", signature), ("signed_body", signed_body), ("token", token)]:
        if value is not None:
            c[field] = value
    if method is not None:
        c["method"] = method
    if path is not None:
        c["path"] = path
    if headers is not None:
        c["headers"] = headers
    if raw is not None:
        c["body_b64"] = base64.b64encode(raw).decode()
    elif size is not None:
        c["body_bytes"] = size
    else:
        c["body"] = body if isinstance(body, str) else json.dumps(body)
    cases.append(c)


def ok(**extra):
    b = {"environment": "production", "repository": "acme/api"}
    b.update(extra)
    return b


# Invalid JSON.
for i, text in enumerate(["", "{", "}", "[", "null", "true", "42", '"production"', "{environment: production}",
                          "{'environment': 'production'}", '{"environment": "production",}', '{"environment" "x"}',
                          '{"a":1}{"b":2}', "\ufeff{}", '{"environment": "production", "repository": "a/b"', "NaN",
                          '{"environment": NaN}', '{"environment": Infinity}', '{"x": 1e999999}', "/* c */ {}"]):
    add(f"invalid json {i}: {text[:24]!r}", 422, text)

# Wrong types for every field.
for field in ["environment", "repository", "branch", "commit_sha", "status", "source", "deployed_at", "external_id"]:
    for j, v in enumerate([1, 1.5, True, [], {}, ["production"]]):
        add(f"{field} as {type(v).__name__} {j}", 422, ok(**{field: v}))
for j, v in enumerate([1, "a string", [], True, 0.5]):
    add(f"extra_data as {type(v).__name__} {j}", 422, ok(extra_data=v))
add("environment null", 422, {"environment": None, "repository": "acme/api"})
add("repository null", 422, {"environment": "production", "repository": None})
add("body is an array of objects", 422, [ok()])

# Deeply nested extra_data.
for depth in [17, 32, 100, 127]:
    v = 1
    for _ in range(depth):
        v = {"a": v}
    add(f"extra_data nested {depth} deep", 422, ok(extra_data=v))
deep_arrays = "[" * 200 + "]" * 200
add("extra_data 200 nested arrays", 422, '{"environment":"production","repository":"acme/api","extra_data":{"x":' + deep_arrays + "}}")
add("recursion bomb 10000 brackets", 422, "[" * 10000)

# Duplicate keys.
for field in ["environment", "repository", "status", "commit_sha", "extra_data"]:
    add(f"duplicate {field}", 422, '{"environment":"production","repository":"acme/api","' + field + '":' +
        ('"x"' if field != "extra_data" else "{}") + ',"' + field + '":' + ('"y"' if field != "extra_data" else "{}") + "}")

# Invalid UTF-8 and NUL bytes.
for i, raw in enumerate([b'{"environment":"\xff\xfe","repository":"acme/api"}', b'{"environment":"production","repository":"acme/\xc3\x28"}',
                         b"\xff\xfe\xfd", b'{"environment":"prod\x00uction","repository":"acme/api"}',
                         b'{"environment":"production","repository":"acme/api"}\x00', b'\x00{"environment":"production"}',
                         b'{"environment":"production","repository":"acme/api","branch":"\xed\xa0\x80"}']):
    add(f"invalid utf-8 or raw NUL {i}", 422, raw=raw)
for field in ["environment", "repository", "branch", "external_id"]:
    add(f"escaped NUL in {field}", 422, ok(**{field: "a\u0000b" if field != "repository" else "acme/a\u0000b"}))
add("escaped NUL in extra_data value", 422, ok(extra_data={"k": "x\u0000y"}))
add("escaped NUL in extra_data key", 422, ok(extra_data={"k\u0000": "x"}))

# Sizes.
add("1 MB body", 413, size=1_000_000)
add("100 MB body", 413, size=100_000_000)
add("64 KiB + 1 body", 413, size=65_537)
add("branch of 256 characters", 422, ok(branch="b" * 256))
add("repository of 300 characters", 422, ok(repository="a/" + "r" * 298))
add("environment of 65 characters", 422, ok(environment="e" * 65))
add("external_id of 256 characters", 422, ok(external_id="x" * 256))

# Content types.
for i, ct in enumerate([None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                        "application/xml", "text/json", "json", "application/jsonx", "*/*", ""]):
    add(f"content type {ct!r}", 415, ok(), content_type=ct)
add("content type with charset is fine", 201, ok(), content_type="application/json; charset=utf-8")
add("vendor +json content type is fine", 201, ok(), content_type="application/vnd.vibemon+json")

# Keys.
for i, key in enumerate(["none", "", "null", "Bearer abc", "vmk_", "vmk_' OR '1'='1", "vmk_0123456789abcdef_" + "A" * 43,
                         "' OR 1=1 --", "$(reboot)", "<script>alert(1)</script>", "vmk_" + "z" * 16 + "_" + "A" * 43,
                         "vmk_0123456789ABCDEF_" + "A" * 43, "x" * 10000]):
    add(f"bad key {i}", 401, ok(), key=key)

# Injection strings in every field: refused where the field has a shape,
# accepted (and stored as inert JSON) in free-form metadata.
INJECTIONS = ["'; DROP TABLE deployments; --", "\" OR \"1\"=\"1", "$(rm -rf /)", "`id`", "; cat /etc/passwd",
              "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "{{7*7}}", "${jndi:ldap://x/a}",
              "../../../../etc/passwd", "%00", "\r\nX-Injected: 1", "|| ls", "&& whoami"]
for i, s in enumerate(INJECTIONS):
    for field in ["environment", "repository", "commit_sha", "status", "source", "deployed_at"]:
        add(f"injection {i} in {field}", 422, ok(**{field: s}))
    add(f"injection {i} in branch", 422 if any(c.isspace() for c in s) else 201, ok(branch=s))
    add(f"injection {i} in extra_data value", 201, ok(extra_data={"note": s}))
    add(f"injection {i} in extra_data key", 201, ok(extra_data={s: "v"}))
    add(f"injection {i} in external_id", 422 if any(ord(c) < 32 for c in s) else 201, ok(external_id=s))
    add(f"injection {i} as unknown field", 422, {**ok(), s: "x"})

# Unicode look-alikes in environment names.
for i, name in enumerate(["\u0440roduction", "pr\u043eduction", "productio\u0578", "ｐｒｏｄｕｃｔｉｏｎ", "production\u200b",
                          "\u200bproduction", "product\u0131on", "PRODUCTION", "Production", "production ", " production",
                          "prod\u00adution", "pro\u0301duction", "productionǃ"]):
    expect = 404 if name in ("PRODUCTION", "Production") else 422
    add(f"look-alike environment {i}", expect, ok(environment=name))

# Extreme timestamps.
for i, ts in enumerate(["0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z",
                        "275760-09-13T00:00:00Z", "2024-02-30T00:00:00Z", "2024-13-01T00:00:00Z", "2024-01-01T25:00:00Z",
                        "2024-01-01T00:00:00+25:00", "-2024-01-01T00:00:00Z", "1e10", "2024-01-01", "yesterday",
                        "2100-01-01T00:00:00Z"]):
    add(f"extreme timestamp {i}: {ts}", 422, ok(deployed_at=ts))
add("a leap second is valid RFC 3339", 201, ok(deployed_at="2016-12-31T23:59:60Z"))
add("timestamp with far negative offset is fine", 201, ok(deployed_at="2024-01-15T00:00:00-12:00"))
add("timestamp with nanoseconds is fine", 201, ok(deployed_at="2024-01-15T10:30:00.123456789Z"))

# Enum near-misses.
for i, s in enumerate(["Success", "SUCCESS", "succeeded", "done", "in-progress", "inprogress", "canceled", " success"]):
    add(f"status near-miss {i}", 422, ok(status=s))
for i, s in enumerate(["GitHub", "github", "gitlab", "Jenkins", "argo", "circleci"]):
    add(f"source near-miss {i}", 422, ok(source=s))
# Commit SHA shapes.
for i, s in enumerate([SHA[:39], SHA + "0", SHA[:7], "g" * 40, SHA.replace("9", " ", 1), "0x" + SHA[:38]]):
    add(f"commit_sha shape {i}", 422, ok(commit_sha=s))
add("upper-case commit_sha is normalised", 201, ok(commit_sha=SHA.upper()))

# Query strings: the webhook takes none and ignores them; the read API refuses
# bad bytes in them with a 422 naming the parameter.
WEBHOOK = "/api/v1/deployments/webhook"
HOSTILE_QUERY = ["%00", "%FF", "%C0%80", "%E2%80%AE", "%EF%BB%BF", "a" * 10_000, "%", "%%", "%zz", "'%20OR%201=1",
                 "..%2F..%2Fetc%2Fpasswd", "%0d%0aX-Injected:%201"]
for i, v in enumerate(HOSTILE_QUERY):
    add(f"query string {i} on the webhook is ignored", 201, ok(), path=f"{WEBHOOK}?x={v}")
    add(f"query string {i} as a duplicated webhook parameter is ignored", 201, ok(), path=f"{WEBHOOK}?x={v}&x={v}")
for i, v in enumerate(["%00", "%FF", "%C0%80", "%E2%80%AE", "%E2%80%8B", "%EF%BB%BF", "%EE%80%80", "a" * 10_000]):
    for name in ["environment", "repository", "status", "since", "until", "cursor", "limit"]:
        add(f"read query {i} in {name}", 422, None, method="GET", path=f"/api/v1/deployments?{name}=a{v}b",
            content_type=None)
    add(f"read query {i} in as-of repository", 422, None, method="GET",
        path=f"/api/v1/environments/production/deployed?repository=a{v}b", content_type=None)
    add(f"read query {i} in a parameter name", 422, None, method="GET", path=f"/api/v1/deployments?a{v}b=1",
        content_type=None)
add("read query parameter given twice", 422, None, method="GET",
    path="/api/v1/deployments?repository=a/b&repository=c/d", content_type=None)

# Hostile Idempotency-Key and X-Request-Id values (what a client can send).
for i, v in enumerate(["", " ", "a b", "k" * 256, "\u00e9t\u00e9", "'; DROP TABLE deployments; --", "\t"]):
    add(f"bad idempotency key {i}", 422, ok(), headers=[["Idempotency-Key", v]])
for i, v in enumerate(["k" * 255, "$(reboot)", "<script>", "%00", "{{7*7}}"]):
    add(f"odd but valid idempotency key {i}", 201, ok(), headers=[["Idempotency-Key", v]])
# X-Request-Id is logged and echoed: printable ASCII up to 255 bytes, else 422.
for i, v in enumerate(["", "r" * 10_000, "'; DROP TABLE x; --", "<script>alert(1)</script>", "%00%0d%0a", "\u202e"]):
    printable = len(v) <= 255 and all(0x20 <= ord(c) <= 0x7E for c in v)
    add(f"hostile x-request-id {i}", 201 if printable else 422, ok(), headers=[["X-Request-Id", v]])

# Unicode format and private-use characters in every field: refused (422
# naming the code point) where the field is text the CLI and API show, inert
# inside extra_data.
FORMAT_CHARS = {"U+202E": "\u202e", "U+200B": "\u200b", "U+FEFF": "\ufeff", "U+E000": "\ue000"}
for label, ch in FORMAT_CHARS.items():
    for field, base in [("environment", "production"), ("repository", "acme/api"), ("branch", "main"),
                        ("external_id", "run-1"), ("commit_sha", SHA), ("status", "success"),
                        ("source", "github_actions"), ("deployed_at", "2024-01-15T10:30:00Z")]:
        add(f"{label} in {field}", 422, ok(**{field: base[:2] + ch + base[2:]}))
    add(f"{label} in an extra_data value is inert", 201, ok(extra_data={"note": "a" + ch + "b"}))
    add(f"{label} in an extra_data key is inert", 201, ok(extra_data={"a" + ch + "b": "v"}))
    add(f"{label} in an unknown field name", 422, {**ok(), "a" + ch + "b": "x"})



# What changed (event version 2): `previous_commit_sha` and `commits`, at most
# 100 objects {sha, committed_at, authored_at?, author? (<= 64 characters),
# subject? (<= 100)}. Optional data, but a bad value refuses the whole report
# (the reporters then resend without it), so each shape is pinned here.
def commit(i=1, **extra):
    c = {"sha": format(i, "040x"), "committed_at": "2024-01-15T09:00:00Z"}
    c.update(extra)
    return c


def commits_of(n):
    return [commit(i + 1) for i in range(n)]


add("commits: one commit is fine", 201, ok(commits=[commit()]))
add("commits: every field is fine", 201, ok(previous_commit_sha=SHA, commits=[commit(
    authored_at="2024-01-14T09:00:00+02:00", author="Ada Lovelace", subject="Fix the rounding of totals")]))
add("commits: 100 commits are fine", 201, ok(commits=commits_of(100)))
add("commits: an empty list is fine", 201, ok(commits=[]))
add("commits: null is fine", 201, ok(commits=None))
add("previous_commit_sha: upper-case is normalised", 201, ok(previous_commit_sha=SHA.upper()))
add("commits: 101 commits", 422, ok(commits=commits_of(101)))
add("commits: 800 commits, over the body limit", 413, ok(commits=commits_of(800)))
add("commits: one sha listed twice", 422, ok(commits=[commit(1), commit(2), commit(1)]))
add("commits: one sha twice in other cases", 422, ok(commits=[commit(10), commit(10, sha=format(10, "040x").upper())]))
for j, v in enumerate([1, 1.5, True, "a string", {}, commit()]):
    add(f"commits as {type(v).__name__} {j}", 422, ok(commits=v))
for j, v in enumerate([None, 1, "x", True, [], [commit()]]):
    add(f"commits entry as {type(v).__name__} {j}", 422, ok(commits=[commit(1), v]))
for j, v in enumerate([1, 1.5, True, [], {}, [SHA]]):
    add(f"previous_commit_sha as {type(v).__name__} {j}", 422, ok(previous_commit_sha=v))
for i, v in enumerate([SHA[:39], SHA + "0", SHA[:7], "g" * 40, "a\u0000" + SHA[:38], "'; DROP TABLE deployments; --"]):
    add(f"previous_commit_sha shape {i}", 422, ok(previous_commit_sha=v))
    add(f"commit sha shape {i}", 422, ok(commits=[commit(sha=v)]))
# An empty optional string means "not given", as for `branch` (GitLab's tag
# pipelines send one); a required one is missing.
add("previous_commit_sha empty is not given", 201, ok(previous_commit_sha=""))
add("commit sha empty", 422, ok(commits=[commit(sha="")]))
add("commit committed_at empty", 422, ok(commits=[commit(committed_at="")]))
for field in ["authored_at", "author", "subject"]:
    add(f"commit {field} empty is not given", 201, ok(commits=[commit(**{field: ""})]))
for field in ["sha", "committed_at"]:
    c = commit()
    del c[field]
    add(f"commit without {field}", 422, ok(commits=[c]))
    add(f"commit with {field} null", 422, ok(commits=[commit(**{field: None})]))
for field in ["sha", "committed_at", "authored_at", "author", "subject"]:
    for j, v in enumerate([1, 1.5, True, [], {}]):
        add(f"commit {field} as {type(v).__name__} {j}", 422, ok(commits=[commit(**{field: v})]))
add("commit with an unknown field", 422, ok(commits=[commit(message="the whole message")]))
add("commit with a repeated field", 422, '{"environment":"production","repository":"acme/api","commits":[{"sha":"'
    + format(1, "040x") + '","committed_at":"2024-01-15T09:00:00Z","author":"a","author":"b"}]}')
# Author and subject: shown by the CLI and the API, so control, format and
# private-use characters are refused, not stripped; other text is inert.
for field, limit in [("author", 64), ("subject", 100)]:
    add(f"commit {field} of {limit} characters is fine", 201, ok(commits=[commit(**{field: "x" * limit})]))
    add(f"commit {field} of {limit} non-ASCII characters is fine", 201, ok(commits=[commit(**{field: "é" * limit})]))
    add(f"commit {field} of {limit + 1} characters", 422, ok(commits=[commit(**{field: "x" * (limit + 1)})]))
    add(f"commit {field} of 10 000 characters", 422, ok(commits=[commit(**{field: "x" * 10_000})]))
    add(f"commit {field} of 70 000 characters (over the test's 64 KiB body limit)", 413,
        ok(commits=[commit(**{field: "x" * 70_000})]))
    for label, ch in [("NUL", "\u0000"), ("BEL", "\u0007"), ("ESC", "\u001b[31m"), ("LF", "\n"), ("CR", "\r"),
                      ("TAB", "\t"), ("DEL", "\u007f"), ("U+0085", "\u0085"), ("U+202E", "\u202e"),
                      ("U+200B", "\u200b"), ("U+FEFF", "\ufeff"), ("U+E000", "\ue000"), ("U+00AD", "\u00ad")]:
        add(f"{label} in commit {field}", 422, ok(commits=[commit(**{field: "Ada" + ch + "Lovelace"})]))
    for i, inj in enumerate(INJECTIONS):
        has_control = any(ord(c) < 32 for c in inj)
        add(f"injection {i} in commit {field}", 422 if has_control else 201, ok(commits=[commit(**{field: inj})]))
add("NUL as raw bytes in a commit subject", 422, raw=b'{"environment":"production","repository":"acme/api","commits":[{"sha":"'
    + format(1, "040x").encode() + b'","committed_at":"2024-01-15T09:00:00Z","subject":"a\x00b"}]}')
# Commit times: any time Postgres holds, even far ahead (a wrong developer
# clock must not cost the deployment its record); at most 64 characters.
for field in ["committed_at", "authored_at"]:
    for i, ts in enumerate(["0000-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "275760-09-13T00:00:00Z",
                            "+275760-09-13T00:00:00Z", "99999999999-01-01T00:00:00Z", "2024-02-30T00:00:00Z",
                            "2024-01-01T00:00:00+25:00", "1e10", "yesterday",
                            "2024-01-15T09:00:00." + "9" * 60 + "Z", "2024-01-15T09:00:00\u0000Z"]):
        add(f"commit {field} extreme {i}: {ts[:32]!r}", 422, ok(commits=[commit(**{field: ts})]))
    add(f"commit {field} in year 9999 is fine", 201, ok(commits=[commit(**{field: "9999-12-31T23:59:59Z"})]))
    add(f"commit {field} at the epoch is fine", 201, ok(commits=[commit(**{field: "1970-01-01T00:00:00Z"})]))
    add(f"commit {field} with nanoseconds and an offset is fine", 201,
        ok(commits=[commit(**{field: "2024-01-15T09:00:00.123456789+05:30"})]))
for i, v in enumerate([1e300, -1, 1705311000]):
    add(f"commit committed_at as a number {i}", 422, ok(commits=[commit(committed_at=v)]))

# Raw requests: what an HTTP client will not send.
def raw_request(name, expect, head, body=b""):
    c = {"name": name, "expect": expect, "content_type": None, "key": "valid",
         "raw_b64": base64.b64encode(head + body).decode()}
    cases.append(c)


BODY = json.dumps(ok()).encode()


def head(*lines, length=True, body=BODY):
    h = b"POST " + WEBHOOK.encode() + b" HTTP/1.1\r\nHost: ingest\r\nConnection: close\r\n"
    h += b"Content-Type: application/json\r\n"
    for line in lines:
        h += line + b"\r\n"
    if length:
        h += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    return h + b"\r\n"


KEY = b"X-Workspace-Key: {KEY}"


def chunked(body, size=None):
    out = b""
    for i in range(0, len(body), size or len(body) or 1):
        part = body[i:i + (size or len(body))]
        out += format(len(part), "x").encode() + b"\r\n" + part + b"\r\n"
    return out + b"0\r\n\r\n"


raw_request("raw: a plain request is accepted", 201, head(KEY), BODY)
raw_request("raw: chunked body without a length", 201, head(KEY, b"Transfer-Encoding: chunked", length=False),
            chunked(BODY, 7))
big = json.dumps(ok(extra_data={"x": "a" * 70_000})).encode()
raw_request("raw: chunked body over the limit", 413, head(KEY, b"Transfer-Encoding: chunked", length=False),
            chunked(big, 4096))
raw_request("raw: chunked body with a bad chunk size", 422, head(KEY, b"Transfer-Encoding: chunked", length=False),
            b"zz\r\n" + BODY + b"\r\n0\r\n\r\n")
# Request smuggling: Content-Length beside Transfer-Encoding. hyper reads the
# chunked framing alone, as RFC 9112 section 6.1 allows, and drops the length;
# were the length believed, the rest would be read as a second request, which
# hostile.rs would see as a second response.
smuggled = chunked(BODY) + head(KEY) + BODY
raw_request("raw: Content-Length with Transfer-Encoding, chunked wins, nothing smuggled", 201,
            head(KEY, b"Transfer-Encoding: chunked", b"Content-Length: 4", length=False), smuggled)
raw_request("raw: Transfer-Encoding gzip, chunked", 422,
            head(KEY, b"Transfer-Encoding: gzip, chunked", length=False), chunked(BODY))
raw_request("raw: two different Content-Lengths", 400,
            head(KEY, b"Content-Length: 3", length=True), BODY)
raw_request("raw: duplicate X-Workspace-Key, first valid", 201, head(KEY, b"X-Workspace-Key: vmk_nope"), BODY)
raw_request("raw: duplicate X-Workspace-Key, first invalid", 401, head(b"X-Workspace-Key: vmk_nope", KEY), BODY)
raw_request("raw: duplicate Content-Type, first not JSON", 415,
            head(KEY).replace(b"Content-Type: application/json", b"Content-Type: text/plain\r\nContent-Type: application/json"), BODY)
raw_request("raw: non-UTF-8 X-Workspace-Key", 401, head(b"X-Workspace-Key: vmk_\xff\xfe"), BODY)
raw_request("raw: non-UTF-8 Idempotency-Key", 422, head(KEY, b"Idempotency-Key: k\xffk"), BODY)
raw_request("raw: non-UTF-8 X-Request-Id", 422, head(KEY, b"X-Request-Id: r\xffr"), BODY)
raw_request("raw: non-UTF-8 Content-Type", 415,
            head(KEY).replace(b"Content-Type: application/json", b"Content-Type: application/js\xffon"), BODY)
raw_request("raw: NUL in a header value", 400, head(KEY, b"X-Request-Id: a\x00b"), BODY)
raw_request("raw: one 50 kB header", 431, head(KEY, b"X-Big: " + b"a" * 50_000), BODY)
raw_request("raw: 200 headers", 431, head(KEY, *[b"X-H%d: v" % i for i in range(200)]), BODY)
raw_request("raw: a 10 kB request-target", 201,
            head(KEY).replace(WEBHOOK.encode(), WEBHOOK.encode() + b"?x=" + b"a" * 10_000, 1), BODY)
raw_request("raw: non-UTF-8 bytes in the request-target", 400,
            head(KEY).replace(WEBHOOK.encode(), WEBHOOK.encode() + b"?x=\xff", 1), BODY)
raw_request("raw: non-UTF-8 path segment on the read API", 422,
            b"GET /api/v1/environments/pro%FFd/deployed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + KEY + b"\r\n\r\n")
raw_request("raw: NUL path segment on the read API", 422,
            b"GET /api/v1/deployments/a%00b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + KEY + b"\r\n\r\n")


# Native intake: GitHub deployment_status and GitLab Deployment Hook
# deliveries. The signature or token is checked before the body is read as
# an event, the receiver is found by the id in the path (404 for none, after
# the same work), a revoked one is 401 once the signature matched. Every
# GitHub delivery is keyed by its deployment_status.id, so each body gets a
# status id of its own (as GitHub gives each status); each GitLab one carries
# its own Idempotency-Key, or, without one, a deployment id of its own. So
# each 201 is a new event on the topic.
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "integrations"
GITHUB_FIXTURE = json.loads((FIXTURES / "github-deployment_status.json").read_text())
GITLAB_FIXTURE = json.loads((FIXTURES / "gitlab-deployment.json").read_text())
GITHUB = "/api/v1/integrations/github/{github}"
GITLAB = "/api/v1/integrations/gitlab/{gitlab}"
UNKNOWN = "6f1c2a54-3b7e-4c1d-9a8e-2f4b5c6d7e8f"


def changed(fixture, change=None):
    v = json.loads(json.dumps(fixture))
    if change is not None:
        change(v)
    return json.dumps(v)


def setting(*path_and_value):
    *path, value = path_and_value

    def change(v):
        for k in path[:-1]:
            v = v[k]
        if value is DELETE:
            del v[path[-1]]
        else:
            v[path[-1]] = value
    return change


DELETE = object()


def own_status(body, n):
    """`body` with a deployment_status.id of its own when it still has the
    fixture's; anything else (not JSON, another id) as it is."""
    try:
        v = json.loads(body)
    except (ValueError, RecursionError, TypeError):
        return body
    fixture_id = GITHUB_FIXTURE["deployment_status"]["id"]
    if isinstance(v, dict) and isinstance(v.get("deployment_status"), dict) \
            and v["deployment_status"].get("id") == fixture_id:
        v["deployment_status"]["id"] = 3_000_000_000 + n
        return json.dumps(v)
    return body


def github(name, expect, body=None, *, event="deployment_status", sign="{github}", path=GITHUB, extra=(),
           delivery=True, **kw):
    body = own_status(changed(GITHUB_FIXTURE) if body is None else body, len(cases))
    headers = [] if event is None else [["X-GitHub-Event", event]]
    if delivery:
        headers.append(["X-GitHub-Delivery", f"hostile-github-{len(cases)}"])
    headers.extend(extra)
    add(f"github: {name}", expect, body, key="none", path=path, headers=headers, sign=sign, **kw)


def gitlab(name, expect, body=None, *, event="Deployment Hook", token="{gitlab}", path=GITLAB, extra=(),
           idempotency=True, **kw):
    headers = [] if event is None else [["X-Gitlab-Event", event]]
    if idempotency:
        headers.append(["Idempotency-Key", f"hostile-gitlab-{len(cases)}"])
    elif body is None:
        # Without the header a delivery is keyed by its status change.
        body = changed(GITLAB_FIXTURE, setting("deployment_id", 7_000 + len(cases)))
    headers.extend(extra)
    add(f"gitlab: {name}", expect, changed(GITLAB_FIXTURE) if body is None else body, key="none", path=path,
        headers=headers, token=token, **kw)


# GitHub: the signature. GitHub sends lower-case hex; hex is read either
# way (the digest is the same), but the prefix is exactly `sha256=`.
github("a valid deployment_status is published", 201)
github("upper-case hex digest is the same digest", 201, signature="sha256={HEX}")
github("missing signature", 401, sign=None)
github("signature with another secret", 401, sign="not-the-secret")
github("signature of another body", 401, signed_body=changed(GITHUB_FIXTURE, setting("deployment_status", "state", "failure")))
github("signature of the body with a trailing newline", 401, signed_body=changed(GITHUB_FIXTURE) + "\n")
github("the GitLab receiver's secret", 401, sign="{gitlab}")
github("sha1= prefix on the sha256 digest", 401, signature="sha1={hex}")
github("SHA256= prefix in upper case", 401, signature="SHA256={hex}")
github("digest without its prefix", 401, signature="{hex}")
github("sha256= and nothing", 401, signature="sha256=")
for i, v in enumerate(["sha256=" + "z" * 64, "sha256=" + "0" * 64, "sha256=" + "0" * 63 + "g", "sha256=" + "+" * 64,
                       "sha256=" + "a" * 63, "sha256=" + "a" * 65, "sha256=" + "a" * 10_000, "sha256=0x" + "a" * 62, "sha1=" + "a" * 40,
                       "'; DROP TABLE integrations; --", "sha256=%00"]):
    github(f"literal signature {i}", 401, sign=None, extra=[["X-Hub-Signature-256", v]])
github("signature in X-Hub-Signature (sha1 header) only", 401, sign=None,
       extra=[["X-Hub-Signature", "sha1=" + "a" * 40]])
github("a ping without a signature", 401, '{"zen":"Keep it logically awesome.","hook_id":1}', event="ping", sign=None)

# GitHub: the receiver in the path.
github("unknown receiver id", 404, path=f"/api/v1/integrations/github/{UNKNOWN}")
github("the nil UUID", 404, path="/api/v1/integrations/github/00000000-0000-0000-0000-000000000000")
for i, v in enumerate(["not-a-uuid", "1", "%20", "%00", "%FF", "'%20OR%201=1%20--", "x" * 10_000,
                       "{github}x", "{github}%00", "{github}%20"]):
    github(f"non-UUID id {i}", 404, path=f"/api/v1/integrations/github/{v}")
github("the receiver's id in upper case is the same receiver", 201, path="/api/v1/integrations/github/{GITHUB}")
for i, v in enumerate(["..%2F..%2Fdeployments%2Fwebhook", "%2e%2e%2fgitlab%2f{gitlab}", "..%5C{github}",
                       "{github}%2F..%2F{github}"]):
    github(f"encoded path traversal in the id {i}", 404, path=f"/api/v1/integrations/github/{v}")
github("the GitLab receiver's id on the GitHub route", 404, path="/api/v1/integrations/github/{gitlab}", sign="{gitlab}")
github("revoked receiver with its valid signature", 401, path="/api/v1/integrations/github/{github_revoked}",
       sign="{github_revoked}")
github("revoked receiver with a wrong signature", 401, path="/api/v1/integrations/github/{github_revoked}",
       sign="not-the-secret")
github("revoked receiver's secret on the live receiver", 401, sign="{github_revoked}")

# GitHub: signed, but not the event it claims.
for i, text in enumerate(["", "{", "null", "[]", '"deployment_status"', "42", '{"deployment": ', "\ufeff{}",
                          '{"a":1}{"b":2}', "[" * 10_000]):
    github(f"signed invalid JSON {i}: {text[:16]!r}", 422, text)
github("signed empty object", 422, "{}")
for what, path in [("deployment", ["deployment"]), ("deployment_status", ["deployment_status"]),
                   ("repository", ["repository"]), ("deployment.id", ["deployment", "id"]),
                   ("deployment.sha", ["deployment", "sha"]), ("deployment.ref", ["deployment", "ref"]),
                   ("deployment_status.state", ["deployment_status", "state"]),
                   ("repository.full_name", ["repository", "full_name"])]:
    github(f"missing {what}", 422, changed(GITHUB_FIXTURE, setting(*path, DELETE)))
for what, path in [("deployment", ["deployment"]), ("deployment_status", ["deployment_status"]),
                   ("deployment.sha", ["deployment", "sha"]), ("deployment_status.state", ["deployment_status", "state"]),
                   ("repository.full_name", ["repository", "full_name"]),
                   ("deployment_status.environment", ["deployment_status", "environment"])]:
    for j, v in enumerate([1, True, [], {"x": 1}]):
        github(f"{what} as {type(v).__name__} {j}", 422, changed(GITHUB_FIXTURE, setting(*path, v)))
for j, v in enumerate(["145988746", 1.5, True, [], 2 ** 63, 2 ** 64, 10 ** 30, 1e300]):
    github(f"deployment.id as {v!r:.24}", 422, changed(GITHUB_FIXTURE, setting("deployment", "id", v)))
    github(f"deployment_status.id as {v!r:.24}", 422, changed(GITHUB_FIXTURE, setting("deployment_status", "id", v)))
github("deployment.id at i64::MAX is taken", 201, changed(GITHUB_FIXTURE, setting("deployment", "id", 2 ** 63 - 1)))
github("workflow_run.id over i64", 422, changed(GITHUB_FIXTURE, setting("workflow_run", "id", 2 ** 64)))
for i, v in enumerate([SHA[:7], SHA[:39], SHA + "0", "g" * 40, "", " " + SHA[1:], "a\u0000" + SHA[:38],
                       "'; DROP TABLE deployments; --"]):
    github(f"bad deployment.sha {i}", 422, changed(GITHUB_FIXTURE, setting("deployment", "sha", v)))
github("upper-case deployment.sha is normalised", 201,
       changed(GITHUB_FIXTURE, setting("deployment", "sha", GITHUB_FIXTURE["deployment"]["sha"].upper())))
for i, v in enumerate(["main\u0000x", "\u0000", "refs/heads/a\u0000b"]):
    github(f"NUL in deployment.ref {i}", 422, changed(GITHUB_FIXTURE, setting("deployment", "ref", v)))
# A ref that is no branch name is kept, inert, as extra_data.ref (as the
# webhook keeps control characters in extra_data); only NUL, which jsonb
# cannot hold, is refused.
github("escape sequence in deployment.ref is no branch, kept as extra_data", 201,
       changed(GITHUB_FIXTURE, setting("deployment", "ref", "main\u001b[31m")))
github("NUL in the environment", 422,
       changed(GITHUB_FIXTURE, setting("deployment", "environment", "produ\u0000ction")))
github("NUL in the repository", 422, changed(GITHUB_FIXTURE, setting("repository", "full_name", "acme/a\u0000b")))
github("NUL in the log_url", 422, changed(GITHUB_FIXTURE, setting("deployment_status", "log_url", "https://x/\u0000")))
for i, v in enumerate(["0000-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9999-12-31T23:59:59Z", "2999-01-01T00:00:00Z",
                       "275760-09-13T00:00:00Z", "+275760-09-13T00:00:00Z", "2024-02-30T00:00:00Z",
                       "2024-01-01T00:00:00+25:00", "1e10", "yesterday", "", 1715786456]):
    github(f"extreme updated_at {i}: {v!r:.28}", 422 if v != "" else 201,
           changed(GITHUB_FIXTURE, setting("deployment_status", "updated_at", v)))
github("GitLab's time format is read too", 201,
       changed(GITHUB_FIXTURE, setting("deployment_status", "updated_at", "2024-05-15 17:20:56 +0200")))
github("a name over 255 characters", 422, changed(GITHUB_FIXTURE, setting("repository", "full_name", "a/" + "r" * 300)))
github("state not in the mapping", 422, changed(GITHUB_FIXTURE, setting("deployment_status", "state", "exploded")))
for i, v in enumerate(["Success", "SUCCESS", "succeeded", "canceled", "cancelled", "", " success"]):
    github(f"state near-miss {i}", 422, changed(GITHUB_FIXTURE, setting("deployment_status", "state", v)))
github("an environment that does not exist", 404,
       changed(GITHUB_FIXTURE, setting("deployment", "environment", "does-not-exist")))
github("form-encoded delivery", 415, "payload=" + changed(GITHUB_FIXTURE), content_type="application/x-www-form-urlencoded")

# GitHub: the headers that say what the delivery is.
github("a ping", 200, '{"zen":"Keep it logically awesome.","hook_id":1}', event="ping")
github("a ping whose body is not JSON", 200, "not json at all", event="ping")
github("an ignored event (push)", 202, '{"ref":"refs/heads/main"}', event="push")
github("an ignored event (deployment)", 202, event="deployment")
github("event name in another case", 202, event="Deployment_Status")
github("inactive is not a new status", 202, changed(GITHUB_FIXTURE, setting("deployment_status", "state", "inactive")))
github("missing X-GitHub-Event", 422, event=None)
github("empty X-GitHub-Event", 422, event="")
github("10 KB X-GitHub-Event", 422, event="e" * 10_000)
github("256-character X-GitHub-Event", 422, event="e" * 256)
github("tab inside X-GitHub-Event", 422, event="deployment\tstatus")
github("non-ASCII X-GitHub-Event", 422, event="d\u00e9ployment_status")
for i, v in enumerate(["'; DROP TABLE x; --", "<script>alert(1)</script>", "${jndi:ldap://x/a}", "{{7*7}}"]):
    github(f"injection in X-GitHub-Event {i}", 202, event=v)
github("missing X-GitHub-Delivery", 422, delivery=False)
github("10 KB X-GitHub-Delivery", 422, extra=[["X-GitHub-Delivery", "d" * 10_000]], delivery=False)

# GitHub: sizes. The runner pins the receivers' limit at 80 KiB, over the
# webhook's 64 KiB.
github("72 KB delivery, over the webhook's limit but not the receivers'", 201,
       changed(GITHUB_FIXTURE, setting("deployment", "payload", {"pad": "x" * 72_000})))
github("90 KB delivery over the receivers' limit", 413,
       changed(GITHUB_FIXTURE, setting("deployment", "payload", {"pad": "x" * 90_000})))
github("90 KB unsigned delivery over the limit is refused before anything", 413,
       changed(GITHUB_FIXTURE, setting("deployment", "payload", {"pad": "x" * 90_000})), sign=None)

# GitLab: the token, compared exactly.
gitlab("a valid Deployment Hook is published", 201)
gitlab("missing token", 401, token=None)
gitlab("empty token", 401, token="")
gitlab("wrong token", 401, token="not-the-token")
gitlab("token with a character changed", 401, token="x{gitlab}")
gitlab("the GitHub receiver's secret", 401, token="{github}")
gitlab("the token twice", 401, token="{gitlab}{gitlab}")
gitlab("10 KB token", 401, token="t" * 10_000)
gitlab("token with an inner space", 401, token="{gitlab} x")
# A field value's leading and trailing whitespace is not part of it (RFC
# 9110 section 5.5): hyper drops it before the token is compared.
gitlab("token with a trailing space", 201, token="{gitlab} ")
gitlab("token with a leading tab", 201, token="\t{gitlab}")
gitlab("token sent as a signature", 401, token=None, sign="{gitlab}")

# GitLab: the receiver in the path.
gitlab("unknown receiver id", 404, path=f"/api/v1/integrations/gitlab/{UNKNOWN}")
for i, v in enumerate(["not-a-uuid", "%00", "..%2F..%2Fdeployments%2Fwebhook", "%2e%2e%2fgithub%2f{github}",
                       "x" * 10_000]):
    gitlab(f"non-UUID id {i}", 404, path=f"/api/v1/integrations/gitlab/{v}")
gitlab("the GitHub receiver's id on the GitLab route", 404, path="/api/v1/integrations/gitlab/{github}",
       token="{github}")
gitlab("revoked receiver with its token", 401, path="/api/v1/integrations/gitlab/{gitlab_revoked}",
       token="{gitlab_revoked}")
gitlab("revoked receiver with a wrong token", 401, path="/api/v1/integrations/gitlab/{gitlab_revoked}",
       token="not-the-token")

# GitLab: the headers.
for i, v in enumerate(["Push Hook", "deployment hook", "Deployment Hook ", "Pipeline Hook", "'; DROP TABLE x; --"]):
    gitlab(f"another X-Gitlab-Event {i}", 202 if v.strip() != "Deployment Hook" else 201, event=v)
gitlab("missing X-Gitlab-Event", 422, event=None)
gitlab("10 KB X-Gitlab-Event", 422, event="E" * 10_000)
gitlab("neither Idempotency-Key nor X-Gitlab-Event-UUID: keyed by the status change", 201, idempotency=False)
gitlab("X-Gitlab-Event-UUID alone is enough", 201, idempotency=False,
       extra=[["X-Gitlab-Event-UUID", "3cf0a1e4-66a8-4f3b-9a39-1c5b2d4e8f01"]])
gitlab("10 KB Idempotency-Key", 422, idempotency=False, extra=[["Idempotency-Key", "k" * 10_000]])
gitlab("form-encoded hook", 415, content_type="application/x-www-form-urlencoded")

# GitLab: signed, but not the event it claims.
for i, text in enumerate(["", "{", "null", "[]", '"Deployment Hook"', "[" * 10_000]):
    gitlab(f"invalid JSON {i}: {text[:16]!r}", 422, text)
gitlab("empty object", 422, "{}")
gitlab("object_kind push", 422, changed(GITLAB_FIXTURE, setting("object_kind", "push")))
COMMIT = "http://10.126.0.2:3000/root/test-deployment-webhooks/-/commit/"
GL_SHA = "279484c09fbe69ededfced8c1bb6e6d24616b468"
for i, (short, url) in enumerate([("279484c0", COMMIT + SHA), ("deadbeef", COMMIT + GL_SHA), ("", COMMIT + GL_SHA),
                                  ("279484c0", COMMIT + GL_SHA[:39]), ("279484c0", COMMIT + "master"),
                                  ("279484c0", ""), ("279484c0", COMMIT + GL_SHA + "0"),
                                  ("279484c0 ", COMMIT + GL_SHA), ("279484c0", COMMIT + GL_SHA + "%00")]):
    gitlab(f"commit_url against short_sha {i}", 422,
           changed(GITLAB_FIXTURE, lambda v, s=short, u=url: v.update(short_sha=s, commit_url=u)))
gitlab("commit_url with a trailing slash", 201, changed(GITLAB_FIXTURE, setting("commit_url", COMMIT + GL_SHA + "/")))
gitlab("short_sha in upper case", 201, changed(GITLAB_FIXTURE, setting("short_sha", "279484C0")))
gitlab("the full SHA as short_sha", 201, changed(GITLAB_FIXTURE, setting("short_sha", GL_SHA)))
for what in ["short_sha", "commit_url", "deployment_id", "status", "environment", "project", "ref"]:
    gitlab(f"missing {what}", 422, changed(GITLAB_FIXTURE, setting(what, DELETE)))
for i, v in enumerate(["Success", "SUCCESS", "cancelled", "pending", "in_progress", "error", "", " success", 1, None]):
    gitlab(f"status not in the mapping {i}: {v!r}", 422, changed(GITLAB_FIXTURE, setting("status", v)))
gitlab("skipped is not recorded", 202, changed(GITLAB_FIXTURE, setting("status", "skipped")))
for j, v in enumerate(["15", 1.5, True, 2 ** 63, 1e300]):
    gitlab(f"deployment_id as {v!r:.24}", 422, changed(GITLAB_FIXTURE, setting("deployment_id", v)))
for i, v in enumerate(["0000-01-01 00:00:00 +0000", "9999-12-31 23:59:59 +0000", "2021-02-30 21:50:00 +0200",
                       "2021-04-28 21:50:00 +2500", "yesterday", 1619639400]):
    gitlab(f"extreme status_changed_at {i}: {v!r:.28}", 422, changed(GITLAB_FIXTURE, setting("status_changed_at", v)))
gitlab("NUL in ref", 422, changed(GITLAB_FIXTURE, setting("ref", "master\u0000x")))
gitlab("NUL in the user name", 422, changed(GITLAB_FIXTURE, lambda v: v["user"].update(username="ro\u0000ot")))
gitlab("90 KB hook over the receivers' limit", 413,
       changed(GITLAB_FIXTURE, setting("commit_title", "x" * 90_000)))


# Raw: a dot segment in the path is not resolved (hyper routes the target as
# sent), so it cannot reach another receiver, with or without its secret.
def intake_raw(name, expect, target, *lines, body):
    h = b"POST " + target + b" HTTP/1.1\r\nHost: ingest\r\nConnection: close\r\nContent-Type: application/json\r\n"
    for line in lines:
        h += line + b"\r\n"
    h += b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    raw_request(name, expect, h, body)


GH_BODY = changed(GITHUB_FIXTURE, setting("deployment_status", "id", 3_999_999_999)).encode()
GL_BODY = changed(GITLAB_FIXTURE).encode()
GH_HEADERS = [b"X-GitHub-Event: deployment_status", b"X-Hub-Signature-256: {GITHUB_SIGNATURE}"]
intake_raw("raw intake: a signed GitHub delivery is published", 201, b"/api/v1/integrations/github/{github}",
           b"X-GitHub-Delivery: hostile-raw-1", *GH_HEADERS, body=GH_BODY)
intake_raw("raw intake: dot segments to the GitLab receiver", 404,
           b"/api/v1/integrations/github/../gitlab/{gitlab}", b"X-Gitlab-Event: Deployment Hook",
           b"X-Gitlab-Token: {gitlab_token}", b"Idempotency-Key: hostile-raw-2", body=GL_BODY)
intake_raw("raw intake: the GitHub route with no id", 404, b"/api/v1/integrations/github/",
           b"X-GitHub-Delivery: hostile-raw-7", *GH_HEADERS, body=GH_BODY)
intake_raw("raw intake: dot segment as the id", 404, b"/api/v1/integrations/github/..",
           b"X-GitHub-Delivery: hostile-raw-3", *GH_HEADERS, body=GH_BODY)
intake_raw("raw intake: ./ before the id", 404, b"/api/v1/integrations/github/./{github}",
           b"X-GitHub-Delivery: hostile-raw-4", *GH_HEADERS, body=GH_BODY)
intake_raw("raw intake: back to the webhook by dot segments", 404,
           b"/api/v1/integrations/github/../../deployments/webhook", b"X-Workspace-Key: {KEY}", body=BODY)
# Control characters in the event type: hyper refuses all but HTAB (400);
# obs-text reaches the handler, which wants printable ASCII (422).
for i, ev in enumerate([b"deployment_status\x01", b"\x1b[31mdeployment_status", b"deployment_status\x7f",
                        b"deployment_status\x0b", b"deployment\tstatus", b"deployment_status\xff", b"\xc3\xa9v\xc3\xa9nement"]):
    expect = 422 if (b"\t" in ev or any(c >= 0x80 for c in ev)) else 400
    intake_raw(f"raw intake: X-GitHub-Event with control or non-ASCII bytes {i}", expect,
               b"/api/v1/integrations/github/{github}", b"X-GitHub-Event: " + ev,
               b"X-GitHub-Delivery: hostile-raw-ev-%d" % i, b"X-Hub-Signature-256: {GITHUB_SIGNATURE}", body=GH_BODY)
intake_raw("raw intake: two signatures, the first wrong", 401, b"/api/v1/integrations/github/{github}",
           b"X-GitHub-Event: deployment_status", b"X-GitHub-Delivery: hostile-raw-5",
           b"X-Hub-Signature-256: sha256=" + b"0" * 64, b"X-Hub-Signature-256: {GITHUB_SIGNATURE}", body=GH_BODY)
intake_raw("raw intake: non-UTF-8 token", 401, b"/api/v1/integrations/gitlab/{gitlab}",
           b"X-Gitlab-Event: Deployment Hook", b"X-Gitlab-Token: {gitlab_token}\xff", b"Idempotency-Key: hostile-raw-6",
           body=GL_BODY)

out = Path(__file__).with_name("hostile.jsonl")
out.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases))
print(f"{len(cases)} cases -> {out}")
