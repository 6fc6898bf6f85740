"""The Kubernetes base as `podman kube play` can run it on one machine.

Reads the kustomize-rendered deploy/k8s/base on stdin and writes, on
stdout, what podman 4.3's `kube play` takes, changed only where a single
host needs it; on stderr, one line per object it leaves out and why.

  - Deployments (ingest, projector, dashboard) as they are, with their
    probes, security contexts, limits, ConfigMap and Secret references,
    except: the local image; host networking, so every address is on
    loopback, with each container's port (the ConfigMap's *_ADDR, the
    probes' port, by number: the declared `ports` go, as kube play would
    publish them) moved to the given base port + 0, 1, 2;
    one replica each (on one host network, two would want one port).
  - the ConfigMap, with KAFKA_BROKERS pointed at the given broker and a
    projector consumer group of its own;
  - Secrets vibemon-db, vibemon-integration and vibemon-dashboard, which
    the manifests expect to exist already (made outside the repository),
    written as SECRETS_DIR/NAME.json for `podman secret create`: podman 4.3
    reads a secretKeyRef from a podman secret holding the Secret's `data` as
    a JSON object of base64 values (a Secret inside the played YAML is
    stored as YAML, then fails to be read as that JSON).

Usage: kube_play.py IMAGE BROKERS DATABASE_URL INTEGRATION_KEY SESSION_KEY BASE_PORT SECRETS_DIR
"""

import base64
import json
import sys
from pathlib import Path

import yaml

RUNS = {"Deployment", "ConfigMap"}
WHY_NOT = {
    "Namespace": "kube play has no namespaces (pods go in podman's one namespace)",
    "Service": "kube play 4.3 does not run Services (no cluster IP, no DNS); clients use the pods' ports",
    "HorizontalPodAutoscaler": "no metrics server or controller to scale by",
    "PodDisruptionBudget": "no eviction API (no nodes to drain)",
    "ServiceMonitor": "a Prometheus Operator custom resource",
    "Job": "kube play 4.3 does not run Jobs; the same migrate and topics ensure ran as compose's setup",
}


def main():
    image, brokers, db_url, integration_key, session_key, base_port, secrets_dir = sys.argv[1:8]
    base_port = int(base_port)
    ports = {"ingest": base_port, "projector": base_port + 1, "dashboard": base_port + 2}
    out = []
    for doc in yaml.safe_load_all(sys.stdin):
        if not doc:
            continue
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind not in RUNS:
            print(f"not run: {kind}/{name}: {WHY_NOT.get(kind, 'not supported by kube play')}", file=sys.stderr)
            continue
        doc["metadata"].pop("namespace", None)
        if kind == "ConfigMap":
            data = doc["data"]
            data["KAFKA_BROKERS"] = brokers
            data["KAFKA_GROUP"] = "vibemon-projector-kube"
            data["INGEST_ADDR"] = f"127.0.0.1:{ports['ingest']}"
            data["PROJECTOR_ADDR"] = f"127.0.0.1:{ports['projector']}"
            data["DASHBOARD_ADDR"] = f"127.0.0.1:{ports['dashboard']}"
        if kind == "Deployment":
            doc["spec"]["replicas"] = 1
            pod = doc["spec"]["template"]["spec"]
            pod["hostNetwork"] = True
            for c in pod["containers"]:
                c["image"] = image
                # kube play publishes declared ports, which a host-network
                # pod cannot; the probes name the port, so they get its number.
                c.pop("ports", None)
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if probe in c and "httpGet" in c[probe]:
                        c[probe]["httpGet"]["port"] = ports[name]
        out.append(doc)
    secrets = {"vibemon-db": {"database-url": db_url},
               "vibemon-integration": {"integration-key": integration_key},
               "vibemon-dashboard": {"session-key": session_key}}
    for name, data in secrets.items():
        secret = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        (Path(secrets_dir) / f"{name}.json").write_text(json.dumps(secret))
    # The ConfigMap before the Deployments that refer to it.
    out.sort(key=lambda d: d["kind"] == "Deployment")
    yaml.safe_dump_all(out, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
