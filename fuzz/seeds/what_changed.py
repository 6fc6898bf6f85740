#!/usr/bin/env python3
"""Adds hand-written seeds for `previous_commit_sha` and `commits` (event
version 2) to both fuzz corpora, named by their SHA-1 as libFuzzer names its
inputs: hostile webhook bodies (wrong types, 101 commits, repeated SHAs,
NUL and control characters in author and subject, overlong fields, null
entries, huge timestamps) in corpus/webhook_body, and version-2 events with
the same faults in corpus/event_decode. The fuzzers start from them; the
stable replay (ingest/tests/it/fuzz_corpus.rs) checks them on every run.
Rerun with `python3 fuzz/seeds/what_changed.py`; it only adds files."""

import copy
import hashlib
import json
from pathlib import Path

here = Path(__file__).resolve().parent
root = here.parent.parent
SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"


def commit(i=1, **extra):
    c = {"sha": format(i, "040x"), "committed_at": "2024-01-15T09:00:00Z"}
    c.update(extra)
    return c


def commits_of(n):
    return [commit(i + 1) for i in range(n)]


HOSTILE_COMMITS = [
    [commit(authored_at="2024-01-14T09:00:00+02:00", author="Ada Lovelace", subject="Fix totals")],
    commits_of(100), commits_of(101), [], None, 1, "x", {}, commit(), [None], [commit(), None], [1], [[commit()]],
    [commit(1), commit(1)], [commit(1), commit(1, sha=format(1, "040x").upper())],
    [commit(author="a\u0000b")], [commit(subject="a\u0000b")], [commit(author="\u001b[31mred")],
    [commit(subject="line\nbreak")], [commit(subject="\u202eevil")], [commit(author="\u00ad")],
    [commit(author="x" * 65)], [commit(subject="x" * 101)], [commit(subject="é" * 100)], [commit(author="")],
    [commit(committed_at="275760-09-13T00:00:00Z")], [commit(committed_at="99999999999-01-01T00:00:00Z")],
    [commit(committed_at="9999-12-31T23:59:59Z")], [commit(committed_at="1969-12-31T23:59:59Z")],
    [commit(committed_at="2024-01-15T09:00:00." + "9" * 60 + "Z")], [commit(committed_at=1e300)],
    [commit(authored_at="2024-01-01T00:00:00+25:00")], [commit(committed_at=None)], [{"sha": SHA}],
    [commit(message="extra")], [commit(sha=1)], [commit(sha=SHA[:39])],
]
HOSTILE_PREVIOUS = [SHA, SHA.upper(), None, 1, [], {}, SHA[:39], "g" * 40, "a\u0000" + SHA[:38], ""]


def webhook_bodies():
    base = {"environment": "production", "repository": "acme/api", "commit_sha": SHA}
    for c in HOSTILE_COMMITS:
        yield json.dumps({**base, "commits": c}).encode()
    for p in HOSTILE_PREVIOUS:
        yield json.dumps({**base, "previous_commit_sha": p, "commits": [commit()]}).encode()
    # What a JSON encoder will not write: a repeated key in a commit, raw NUL.
    yield (b'{"environment":"production","repository":"acme/api","commits":[{"sha":"' + SHA.encode()
           + b'","committed_at":"2024-01-15T09:00:00Z","author":"a","author":"b"}]}')
    yield (b'{"environment":"production","repository":"acme/api","commits":[{"sha":"' + SHA.encode()
           + b'","committed_at":"2024-01-15T09:00:00Z","subject":"a\x00b"}]}')
    yield b'{"environment":"production","repository":"acme/api","commits":[' + b"[" * 200 + b"]" * 200 + b"]}"


def events():
    base = json.loads((root / "schemas/fixtures/deployment-reported.v2.commits.json").read_text())
    for c in HOSTILE_COMMITS:
        e = copy.deepcopy(base)
        e["commits"] = c
        yield json.dumps(e).encode()
    for p in HOSTILE_PREVIOUS:
        e = copy.deepcopy(base)
        e["previous_commit_sha"] = p
        yield json.dumps(e).encode()
    e = copy.deepcopy(base)
    del e["commits"]
    yield json.dumps(e).encode()
    e = copy.deepcopy(base)
    e["schema_version"] = 1
    yield json.dumps(e).encode()


added = 0
for target, inputs in [("webhook_body", webhook_bodies()), ("event_decode", events())]:
    out = here.parent / "corpus" / target
    for data in inputs:
        path = out / hashlib.sha1(data).hexdigest()
        if not path.exists():
            path.write_bytes(data)
            added += 1
print(f"{added} seeds added")
