"""check.py: the published schemas as Python's `jsonschema` sees them.

Run by schemas/interop/run with the job file that schemas/tests/interop.rs
writes. Checks that every event schema (one per version: "event" is v1,
"event.v2" ...) and every OpenAPI component schema
compile (every `pattern` must be a regex Python accepts), that each vector
gets the verdict Rust gave it, and that each name pattern accepts "a{c}b"
for exactly the code points Rust accepts. Prints one line per disagreement,
then "python jsonschema: ok" or exits 1.
"""

import json
import sys

from jsonschema import Draft202012Validator as Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

WHO = "python jsonschema"
OPENAPI_URI = "urn:vibemon:openapi"


def pointer(doc, ptr):
    for part in ptr.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        # An array's items (a path's parameters) by their index.
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def event_docs(docs):
    """The event schemas, one per version, by their name in the job."""
    return [(name, doc) for name, doc in docs.items() if name.startswith("event")]


def compile_errors(docs):
    schemas = [(f"{name} schema", doc) for name, doc in event_docs(docs)]
    schemas += [
        (f"openapi.json components/schemas/{name}", schema)
        for name, schema in docs["openapi"]["components"]["schemas"].items()
    ]
    errors = []
    for name, schema in schemas:
        try:
            Validator.check_schema(schema)
        except SchemaError as e:
            where = "/".join(str(p) for p in e.path)
            errors.append(f"{WHO}: {name} does not compile: {e.message} (at /{where})")
    return errors


def validators(docs):
    assert "date-time" in Validator.FORMAT_CHECKER.checkers, "rfc3339-validator is missing"
    registry = Registry().with_resource(OPENAPI_URI, DRAFT202012.create_resource(docs["openapi"]))
    webhook = {"$ref": f"{OPENAPI_URI}#/components/schemas/WebhookRequest"}
    checker = Validator.FORMAT_CHECKER
    by_schema = {name: Validator(doc, format_checker=checker) for name, doc in event_docs(docs)}
    by_schema["webhook"] = Validator(webhook, registry=registry, format_checker=checker)
    return by_schema


def vector_errors(job, by_schema):
    errors = []
    for v in job["vectors"]:
        validator = by_schema[v["schema"]]
        got = validator.is_valid(v["instance"])
        if got != v["valid"]:
            why = "; ".join(e.message[:200] for e in validator.iter_errors(v["instance"]))
            errors.append(
                f"{WHO}: {v['name']}: the schema says {'valid' if got else 'invalid'}, "
                f"Rust says {'valid' if v['valid'] else 'invalid'}" + (f" ({why})" if why else "")
            )
    return errors


def accepted(pattern, seen={}):
    """Which code points c the `pattern` keyword accepts in "a{c}b" (a
    pattern shared by two fields is swept once: about 2.5 s each)."""
    if pattern not in seen:
        validator = Validator({"pattern": pattern})
        seen[pattern] = [
            not (0xD800 <= cp <= 0xDFFF) and validator.is_valid(f"a{chr(cp)}b")
            for cp in range(0x110000)
        ]
    return seen[pattern]


def sweep_errors(job, docs):
    errors = []
    for sweep in job["sweeps"]:
        got = accepted(pointer(docs[sweep["document"]], sweep["pointer"]))
        allowed = [False] * 0x110000
        for lo, hi in sweep["allowed"]:
            allowed[lo : hi + 1] = [True] * (hi - lo + 1)
        wrong = [
            cp
            for cp in range(0x110000)
            if not (0xD800 <= cp <= 0xDFFF) and got[cp] != allowed[cp]
        ]
        if wrong:
            shown = ", ".join(
                f"U+{cp:04X} ({'Rust accepts' if allowed[cp] else 'Rust refuses'})" for cp in wrong[:8]
            )
            errors.append(
                f"{WHO}: {sweep['file']} {sweep['pointer']}: \"a{{c}}b\" disagrees with Rust "
                f"for {len(wrong)} code points: {shown}"
            )
    return errors


def main(job_path):
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    docs = {}
    for name, path in job["documents"].items():
        with open(path, encoding="utf-8") as f:
            docs[name] = json.load(f)
    errors = compile_errors(docs)
    if not errors:
        errors = vector_errors(job, validators(docs)) + sweep_errors(job, docs)
    for line in errors:
        print(line)
    if errors:
        return 1
    print(f"{WHO}: ok ({len(job['vectors'])} vectors, {len(job['sweeps'])} sweeps)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
