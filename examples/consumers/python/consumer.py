#!/usr/bin/env python3
"""Reads deployments.v1 in a consumer group and prints what is running where.

Each record's CloudEvents headers are checked, its value is validated with
jsonschema against the published schema its ce_dataschema names, events are
deduplicated by event id, and a version this consumer has no schema for is
skipped with a warning. With --dlq it reads <topic>.dlq instead and prints
each dead letter's reason. The contract: schemas/asyncapi.json and
docs/consuming.md.

    consumer.py --brokers 127.0.0.1:9092 --topic deployments.v1 \
        --group rca-python --schemas schemas [--until-caught-up] [--dlq]
"""

import argparse
import glob
import json
import os
import re
import sys
from datetime import datetime, timezone

from confluent_kafka import Consumer, TopicPartition
from jsonschema import Draft202012Validator, FormatChecker

CE_TYPE = re.compile(r"^com\.vibemonitor\.deployment\.reported\.v([0-9]+)$")
REQUIRED = ["ce_specversion", "ce_id", "ce_type", "ce_dataschema", "ce_source", "ce_time", "content-type"]
STATUS_RANK = {"pending": 0, "in_progress": 1, "success": 2, "failed": 2, "cancelled": 2}


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr, flush=True)


RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)


def instant(s):
    """RFC 3339 as (epoch seconds, nanoseconds), exact for any precision.
    RFC 3339 allows a lowercase "t" and "z"; ValueError if s is not one."""
    m = RFC3339.match(s)
    if not m:
        raise ValueError(f"not an RFC 3339 date-time: {s!r}")
    offset = "+00:00" if m.group(4) in ("Z", "z") else m.group(4)
    whole = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{offset}")
    return (int(whole.astimezone(timezone.utc).timestamp()), int((m.group(3) or "0").ljust(9, "0")[:9]))


def load_schemas(directory):
    """Version -> (schema $id, validator), for every deployment-reported.vN.schema.json."""
    out = {}
    for path in glob.glob(os.path.join(directory, "deployment-reported.v*.schema.json")):
        version = int(re.search(r"\.v(\d+)\.schema\.json$", path).group(1))
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
        out[version] = (schema["$id"], Draft202012Validator(schema, format_checker=FormatChecker()))
    return out


class Model:
    """Each deployment's greatest report, and per (workspace, environment,
    repository) its latest successful deployment: the projector's rules."""

    def __init__(self):
        self.deployments = {}
        self.running = {}
        self.seen = set()
        self.counts = {"events": 0, "duplicates": 0, "skipped": 0, "invalid": 0}

    def apply(self, e):
        if e["event_id"] in self.seen:
            self.counts["duplicates"] += 1
            return
        self.seen.add(e["event_id"])
        self.counts["events"] += 1
        rank = (STATUS_RANK[e["status"]], instant(e["deployed_at"]), instant(e["received_at"]), e["event_id"])
        old = self.deployments.get(e["deployment_id"])
        if old is not None and old["rank"] >= rank:
            return
        self.deployments[e["deployment_id"]] = {"rank": rank, "event": e}
        if old is None or old["event"]["status"] != e["status"]:
            print(f"status   {e['deployment_id']} {e['status']}", flush=True)
        self.refresh((e["workspace_id"], e["environment"], e["repository"]))

    def refresh(self, key):
        best = None
        for d in self.deployments.values():
            e = d["event"]
            if (e["workspace_id"], e["environment"], e["repository"]) != key or e["status"] != "success":
                continue
            order = (instant(e["deployed_at"]), e["deployment_id"])
            if best is None or order > best[0]:
                best = (order, e)
        if best is None:
            # No success left (e.g. the only one overturned by a later
            # failure of the same deployment): nothing of it runs there.
            if self.running.pop(key, None) is not None:
                print(f"gone     {key[1]} {key[2]} (workspace {key[0]})", flush=True)
            return
        e = best[1]
        now = {
            "deployment_id": e["deployment_id"],
            "commit_sha": e.get("commit_sha"),
            "branch": e.get("branch"),
            "deployed_at": e["deployed_at"],
        }
        if self.running.get(key) != now:
            self.running[key] = now
            print(f"running  {key[1]} {key[2]} {now['commit_sha']} (deployment {now['deployment_id']}, workspace {key[0]})", flush=True)

    def summary(self):
        running = {}
        for (ws, env, repo), now in self.running.items():
            running.setdefault(ws, {}).setdefault(env, {})[repo] = now
        statuses = {i: d["event"]["status"] for i, d in self.deployments.items()}
        return {"running": running, "deployments": statuses, **self.counts}


def check(record, schemas):
    """The event, or None after a warning (counted by the caller as `why`)."""
    where = f"partition {record.partition()} offset {record.offset()}"
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in (record.headers() or [])}
    missing = [h for h in REQUIRED if h not in headers]
    if missing:
        return "invalid", f"{where}: missing CloudEvents headers {missing}"
    if headers["ce_specversion"] != "1.0" or headers["content-type"] != "application/json":
        return "invalid", f"{where}: not a CloudEvents 1.0 JSON record"
    m = CE_TYPE.match(headers["ce_type"])
    if not m or int(m.group(1)) not in schemas:
        return "skipped", f"{where}: unknown ce_type {headers['ce_type']}, skipped"
    version = int(m.group(1))
    schema_id, validator = schemas[version]
    if headers["ce_dataschema"] != schema_id:
        return "invalid", f"{where}: ce_dataschema {headers['ce_dataschema']} is not {schema_id}"
    try:
        event = json.loads(record.value())
    except (TypeError, ValueError) as err:
        return "invalid", f"{where}: value is not JSON: {err}"
    errors = sorted(validator.iter_errors(event), key=str)
    if errors:
        return "invalid", f"{where}: not a v{version} event: {errors[0].message}"
    if headers["ce_id"] != event["event_id"] or headers["ce_source"] != f"/workspaces/{event['workspace_id']}":
        return "invalid", f"{where}: headers do not match the event"
    for field in ("deployed_at", "received_at"):
        try:
            instant(event[field])
        except (ValueError, OverflowError) as err:
            return "invalid", f"{where}: {field}: {err}"
    return "event", event


def end_offsets(consumer, topic):
    """Each non-empty partition's end offset now; exits 1 if the topic is not there."""
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        why = meta.error if meta is not None and meta.error is not None else "no partitions"
        print(f"error: topic {topic}: {why}", file=sys.stderr, flush=True)
        sys.exit(1)
    parts = meta.partitions
    ends = {}
    for p in parts:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
    return ends


def caught_up(ends, next_offsets):
    """Every partition read up to the end offset it had when we started."""
    return all(next_offsets.get(p, 0) >= end for p, end in ends.items())


def dead_letter(record):
    h = {k: (v or b"").decode("utf-8", "replace") for k, v in (record.headers() or [])}
    print(f"dead     {h.get('dlq_reason_class')} {h.get('dlq_original_topic')}/{h.get('dlq_original_partition')}@{h.get('dlq_original_offset')}: {h.get('dlq_reason')}", flush=True)
    return {
        "reason_class": h.get("dlq_reason_class"),
        "reason": h.get("dlq_reason"),
        "original_topic": h.get("dlq_original_topic"),
        "original_partition": int(h.get("dlq_original_partition", "-1")),
        "original_offset": int(h.get("dlq_original_offset", "-1")),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", default=os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092"))
    p.add_argument("--topic", default="deployments.v1")
    p.add_argument("--group", required=True)
    p.add_argument("--schemas", default="schemas", help="the directory of deployment-reported.vN.schema.json")
    p.add_argument("--until-caught-up", action="store_true", help="stop at the end offsets seen at start, and print the summary")
    p.add_argument("--dlq", action="store_true", help="read <topic>.dlq and print each dead letter's reason")
    args = p.parse_args()

    topic = args.topic + ".dlq" if args.dlq else args.topic
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,
    })
    ends = end_offsets(consumer, topic)
    consumer.subscribe([topic])
    schemas = load_schemas(args.schemas)
    model, dead, next_offsets = Model(), [], {}
    try:
        while not (args.until_caught_up and caught_up(ends, next_offsets)):
            record = consumer.poll(0.2)
            if record is None:
                continue
            if record.error():
                warn(str(record.error()))
                continue
            next_offsets[record.partition()] = record.offset() + 1
            if args.dlq:
                dead.append(dead_letter(record))
                continue
            what, detail = check(record, schemas)
            if what == "event":
                model.apply(detail)
            else:
                model.counts[what] += 1
                warn(detail)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if args.dlq:
        dead.sort(key=lambda d: (d["original_partition"], d["original_offset"]))
        print(json.dumps({"dead_letters": dead}, sort_keys=True))
    else:
        print(json.dumps(model.summary(), sort_keys=True))


if __name__ == "__main__":
    main()
