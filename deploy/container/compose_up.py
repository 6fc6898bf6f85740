"""Start a compose stack's services in depends_on order, each condition met.

Run by deploy/container/compose with the podman-compose command line as its
arguments. podman-compose creates the containers (`up --no-start`); this
starts each one after its dependencies are healthy (their health check, run
with `podman healthcheck run`, passed), completed (exited 0) or started, as
docker-compose.yml asks, and returns once every service with a health check
is healthy. Exits non-zero, with the culprit's last log lines, when a
dependency fails, exits or stays unhealthy past its retries.
"""

import json
import re
import subprocess
import sys
import time

import yaml


def log(msg):
    print(f"compose: {msg}", file=sys.stderr, flush=True)


def seconds(value, default):
    if value is None:
        return default
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(value))
    return int(m.group(1) or 0) * 60 + float(m.group(2) or 0) if m else default


def order(services):
    done, out = set(), []

    def visit(name, path=()):
        if name in done:
            return
        if name in path:
            raise SystemExit(f"compose: depends_on cycle through {name}")
        for dep in services[name].get("depends_on") or {}:
            visit(dep, path + (name,))
        done.add(name)
        out.append(name)

    for name in services:
        visit(name)
    return out


class Stack:
    def __init__(self, pc):
        self.pc = pc
        self.config = yaml.safe_load(subprocess.run(pc + ["config"], check=True, capture_output=True, text=True).stdout)
        self.project = self.config["name"]
        self.healthy = set()

    def container(self, service):
        out = subprocess.run(
            ["podman", "ps", "-a", "--format", "{{.Names}}",
             "--filter", f"label=com.docker.compose.project={self.project}",
             "--filter", f"label=com.docker.compose.service={service}"],
            check=True, capture_output=True, text=True).stdout.split()
        if len(out) != 1:
            raise SystemExit(f"compose: expected one container for {service}, found {out}")
        return out[0]

    def state(self, ctr):
        s = json.loads(subprocess.run(["podman", "inspect", "--format", "{{json .State}}", ctr],
                                      check=True, capture_output=True, text=True).stdout)
        return s["Status"], s.get("ExitCode", 0)

    def fail(self, service, why):
        ctr = self.container(service)
        logs = subprocess.run(["podman", "logs", "--tail", "30", ctr], capture_output=True, text=True)
        sys.stderr.write(logs.stdout + logs.stderr)
        raise SystemExit(f"compose: {service} {why}")

    def wait_healthy(self, service):
        if service in self.healthy:
            return
        check = self.config["services"][service].get("healthcheck")
        if not check:
            raise SystemExit(f"compose: {service} has no health check to wait for")
        ctr = self.container(service)
        interval = seconds(check.get("interval"), 30)
        retries = int(check.get("retries", 3))
        started = time.monotonic()
        for attempt in range(retries + 1):
            status, code = self.state(ctr)
            if status != "running":
                self.fail(service, f"is {status} (exit code {code}) before it became healthy")
            r = subprocess.run(["podman", "healthcheck", "run", ctr], capture_output=True, text=True)
            if r.returncode == 0:
                log(f"{service} is healthy after {time.monotonic() - started:.1f}s")
                self.healthy.add(service)
                return
            if attempt < retries:
                time.sleep(interval)
        self.fail(service, f"is still unhealthy after {retries} retries every {interval}s")

    def wait_completed(self, service):
        ctr = self.container(service)
        subprocess.run(["podman", "wait", ctr], check=True, capture_output=True)
        status, code = self.state(ctr)
        if code != 0:
            self.fail(service, f"exited with {code}")
        log(f"{service} completed successfully")

    def wait_started(self, service):
        status, code = self.state(self.container(service))
        if status != "running":
            self.fail(service, f"is {status} (exit code {code})")

    def up(self):
        # --no-deps: no `podman --requires` between them, which podman 4.3 cannot
        # start one at a time; the order is kept here instead.
        subprocess.run(self.pc + ["up", "-d", "--no-build", "--no-start", "--no-deps"], check=True, stdout=subprocess.DEVNULL)
        services = self.config["services"]
        waits = {"service_healthy": self.wait_healthy, "service_completed_successfully": self.wait_completed,
                 "service_started": self.wait_started}
        for name in order(services):
            for dep, cond in (services[name].get("depends_on") or {}).items():
                waits[(cond or {}).get("condition", "service_started")](dep)
            subprocess.run(["podman", "start", self.container(name)], check=True, capture_output=True)
            log(f"started {name}")
        for name, svc in services.items():
            if svc.get("healthcheck"):
                self.wait_healthy(name)


if __name__ == "__main__":
    Stack(sys.argv[1:]).up()
    log("every service is up")
