"""The checks behind deploy/check-manifests; each prints one line and the
script exits non-zero when any fails."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")
    if not ok:
        failures.append(name)


def exported_metrics(root):
    names = set()
    for src in ["ingest/src/metrics.rs", "projector/src/metrics.rs"]:
        names |= set(re.findall(r'"(vibemon_[a-z_]+)"', (root / src).read_text()))
    full = set(names)
    for n in names:
        full |= {n + "_bucket", n + "_sum", n + "_count"}
    return full


def used_metrics(text):
    return set(re.findall(r"\b(vibemon_[a-z_]+)\b", text))


def env_names(bin_dir):
    names = set()
    # vibemon's variables are per command; these are the ones a service may share.
    for b, *args in [["ingest"], ["projector"], ["dashboard"], ["vibemon"], ["vibemon", "integration", "create"]]:
        out = subprocess.run([str(bin_dir / b), *args, "--help"], capture_output=True, text=True, check=True).stdout
        names |= set(re.findall(r"\[env: ([A-Z_]+)", out))
    if "vibemon" in names or not names:
        raise SystemExit("could not read env names from --help")
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path)
    ap.add_argument("--render")
    ap.add_argument("--validate")
    ap.add_argument("--bin-dir", type=Path)
    a = ap.parse_args()
    root = a.root
    metrics = exported_metrics(root)

    # Prometheus rules: syntax, and every metric is one we export.
    rules = root / "deploy/monitoring/alerts.yml"
    r = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True)
    check("promtool check rules deploy/monitoring/alerts.yml", r.returncode == 0, r.stdout + r.stderr)
    unknown = used_metrics(rules.read_text()) - metrics
    check("alert rules use only exported metrics", not unknown, str(sorted(unknown)))
    alerts = {rule["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for rule in g["rules"]}
    check("alerts cover 5xx ratio, produce latency, lag growth, DLQ, projector stopped",
          {"VibemonIngestErrorRatioHigh", "VibemonIngestProduceLatencyHigh", "VibemonProjectorLagGrowing",
           "VibemonDeadLetters", "VibemonProjectorStopped"} <= alerts, str(alerts))

    # Grafana dashboard.
    dash = json.loads((root / "deploy/monitoring/grafana-dashboard.json").read_text())
    # PromQL only: a panel on the Postgres data source has SQL targets.
    exprs = " ".join(t.get("expr", "") for p in dash["panels"] for t in p["targets"])
    unknown = used_metrics(exprs) - metrics
    check("dashboard uses only exported metrics", not unknown, str(sorted(unknown)))
    for needed in ["vibemon_http_requests_total", "vibemon_http_request_duration_seconds_bucket",
                   "vibemon_ingest_produce_duration_seconds_bucket", "vibemon_ingest_producer_queue_messages",
                   "vibemon_ingest_auth_cache_total", "vibemon_projector_consumer_lag",
                   "vibemon_projector_events_projected_total", "vibemon_projector_dlq_total"]:
        check(f"dashboard charts {needed}", needed in exprs)
    # Deployment annotations from the read model (their SQL is run against a
    # migrated Postgres by vibemon/tests/it/deploy_files.rs).
    pg_vars = {v["name"] for v in dash["templating"]["list"]
               if v["type"] == "datasource" and v["query"] == "grafana-postgresql-datasource"}
    annotations = dash.get("annotations", {}).get("list", [])
    check("dashboard annotates deployments from a templated Postgres data source",
          len(annotations) >= 2 and all(a["datasource"]["uid"].strip("${}") in pg_vars
                                        and "$__timeFilter(" in a["target"]["rawSql"] for a in annotations),
          str(annotations))

    known_env = env_names(a.bin_dir) | {"RUST_LOG"}

    # Kubernetes: render base and overlay with kustomize, validate against the schemas.
    partitions = None
    for target in ["deploy/k8s/base", "deploy/k8s/overlays/production"]:
        r = subprocess.run([a.render, str(root / target)], capture_output=True, text=True)
        check(f"kustomize build {target}", r.returncode == 0, r.stderr)
        if r.returncode != 0:
            continue
        out = Path("/tmp") / (target.replace("/", "_") + ".yaml")
        out.write_text(r.stdout)
        v = subprocess.run([a.validate, "--strict", "--quiet", str(out)], capture_output=True, text=True)
        errors = [l for l in (v.stdout + v.stderr).splitlines() if "ERROR" in l or "failed" in l.lower()]
        check(f"kubernetes-validate --strict {target}", v.returncode == 0 and not errors, "\n".join(errors) or v.stderr)
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
        for k in [("Deployment", "ingest"), ("Service", "ingest"), ("HorizontalPodAutoscaler", "ingest"),
                  ("PodDisruptionBudget", "ingest"), ("Deployment", "projector"), ("Job", "vibemon-setup"),
                  ("ConfigMap", "vibemon-config"), ("ServiceMonitor", "ingest"), ("ServiceMonitor", "projector"),
                  ("Deployment", "dashboard"), ("Service", "dashboard")]:
            check(f"{target} has {k[0]}/{k[1]}", k in kinds)
        services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
        for d in docs:
            if d["kind"] == "ServiceMonitor":
                sel = d["spec"]["selector"]["matchLabels"]
                svc = [s for s in services.values() if all(s["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
                ports = {p["name"] for s in svc for p in s["spec"]["ports"]}
                ok = svc and all(e["port"] in ports and e.get("path") == "/metrics" for e in d["spec"]["endpoints"])
                check(f"{target} ServiceMonitor/{d['metadata']['name']} selects a Service port serving /metrics", bool(ok))
            if d["kind"] in ("Deployment", "Job"):
                spec = d["spec"]["template"]["spec"]
                pod_ok = spec.get("securityContext", {}).get("runAsNonRoot") is True
                for c in spec["containers"]:
                    sc = c.get("securityContext", {})
                    ok = pod_ok and sc.get("readOnlyRootFilesystem") is True and "limits" in c.get("resources", {}) \
                        and "requests" in c.get("resources", {})
                    check(f"{target} {d['kind']}/{d['metadata']['name']} is non-root, read-only, with requests and limits", ok)
                    if d["kind"] == "Deployment":
                        probes = (c.get("readinessProbe", {}).get("httpGet", {}).get("path"),
                                  c.get("livenessProbe", {}).get("httpGet", {}).get("path"))
                        check(f"{target} {d['metadata']['name']} probes /readyz and /healthz", probes == ("/readyz", "/healthz"), str(probes))
                    if d["kind"] == "Job":
                        m = re.search(r"--partitions (\d+)", " ".join(c.get("command", [])))
                        partitions = int(m.group(1)) if m else None
        # Every variable the manifests set is one a binary reads.
        set_env = set()
        for d in docs:
            if d["kind"] == "ConfigMap":
                set_env |= set(d.get("data", {}))
            if d["kind"] in ("Deployment", "Job"):
                for c in d["spec"]["template"]["spec"]["containers"]:
                    set_env |= {e["name"] for e in c.get("env", [])}
        unknown = set_env - known_env
        check(f"{target} sets only variables the binaries read", not unknown, str(sorted(unknown)))
        dash = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "dashboard"]
        dash_env = {e["name"]: e for c in (dash[0]["spec"]["template"]["spec"]["containers"] if dash else []) for e in c.get("env", [])}
        check(f"{target} dashboard takes DASHBOARD_SESSION_KEY from a Secret",
              "secretKeyRef" in dash_env.get("DASHBOARD_SESSION_KEY", {}).get("valueFrom", {}), str(dash_env.keys()))
        projector = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "projector"][0]
        check(f"{target} projector replicas ({projector['spec']['replicas']}) <= topic partitions ({partitions})",
              partitions is not None and projector["spec"]["replicas"] <= partitions)

    # docker-compose.yml: referenced files and commands exist, env names are the binaries'.
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    ours = {"setup", "ingest", "projector", "dashboard"}
    check("compose has a dashboard service", "dashboard" in compose["services"])
    for name, svc in compose["services"].items():
        if "healthcheck" not in svc and name != "setup":
            check(f"compose {name} has a health check", False, "missing")
        build = svc.get("build")
        if build:
            df = root / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            check(f"compose {name} Dockerfile {df.relative_to(root)} exists", df.exists())
        for vol in svc.get("volumes", []):
            host = vol.split(":")[0]
            if host.startswith("./"):
                check(f"compose {name} mounts existing {host}", (root / host).exists())
        if name in ours:
            entry = " ".join(svc.get("entrypoint", []))
            binaries = set(re.findall(r"/usr/local/bin/(\w+)", entry))
            check(f"compose {name} runs a binary we build", binaries <= {"ingest", "projector", "vibemon", "dashboard"}, entry)
            env = svc.get("environment", {})
            unknown = set(env) - known_env
            check(f"compose {name} sets only variables the binaries read", not unknown, str(sorted(unknown)))
        for dep, cond in (svc.get("depends_on") or {}).items():
            check(f"compose {name} waits for {dep}", cond.get("condition") in ("service_healthy", "service_completed_successfully"))
    setup = (root / "deploy/compose-setup.sh").read_text()
    check("compose setup runs vibemon migrate and topics ensure", "vibemon migrate" in setup and "vibemon topics ensure" in setup)

    dockerfile = (root / "deploy/Dockerfile").read_text()
    for needle in ["cargo chef cook", "SQLX_OFFLINE", "USER 10001", "bookworm-slim", "--bin dashboard",
                   "ARG RUNTIME_IMAGE=debian:bookworm-slim", "AS prebuilt"]:
        check(f"Dockerfile has {needle}", needle in dockerfile)

    action = yaml.safe_load((root / "deploy/github-action/action.yml").read_text())
    check("GitHub action is a composite action", action["runs"]["using"] == "composite")
    check("GitHub action is lenient unless strict", action["inputs"]["strict"]["default"] == "false")

    print(f"{len(failures)} failed" if failures else "all deployment files pass their checks")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
