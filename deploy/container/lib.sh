# lib.sh: what every script in deploy/container shares, sourced, not run.
#
# Podman as Debian packages it (4.3) runs containers on these machines with
# runc, the cgroupfs manager and no default ulimits (containers.conf here).
# Its storage lives under $VIBEMON_HOME/containers, with the cached Debian
# root file system the local images start from, so nothing big lands in the
# work tree and `rm -rf $VIBEMON_HOME/containers` forgets every image.

ct_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ct_root=$(cd "$ct_here/../.." && pwd)
: "${VIBEMON_HOME:=$HOME/.cache/vibemon}"
export VIBEMON_HOME
CT_HOME="$VIBEMON_HOME/containers"
export CONTAINERS_CONF="$ct_here/containers.conf"
export CONTAINERS_STORAGE_CONF="$CT_HOME/storage.conf"

# The local images, each named where the public default is pulled by users.
BASE_IMAGE=localhost/vibemon/debian:bookworm
KAFKA_IMAGE=localhost/vibemon/kafka:4.4.0
POSTGRES_IMAGE=localhost/vibemon/postgres:15
APP_IMAGE=localhost/vibemon/vibemon:local

ct_log() { echo "${ct_name:-container}: $*" >&2; }
ct_die() { ct_log "$*"; exit 1; }

ct_as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian's packages for podman, its OCI runtime, debootstrap and what the
# Kafka image needs, on first use (CI machines start without them).
ct_ensure_tools() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v curl >/dev/null || missing+=(curl)
  # The Kafka image's jars come through deploy/local/kafka-node fetch.
  command -v mvn >/dev/null || missing+=(maven)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  # The pause process of the infra container every pod (kube play) has.
  [ -x /usr/libexec/podman/catatonit ] || command -v catatonit >/dev/null || missing+=(catatonit)
  if [ ${#missing[@]} -gt 0 ]; then
    ct_log "installing ${missing[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    { ct_as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
      || { ct_as_root apt-get update -q >&2 && ct_as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }; } \
      || ct_die "could not install ${missing[*]} with apt-get"
  fi
  mkdir -p "$CT_HOME/storage"
  if [ ! -f "$CONTAINERS_STORAGE_CONF" ]; then
    cat > "$CONTAINERS_STORAGE_CONF" <<CONF
# Written by deploy/container/lib.sh: this project's images and containers,
# apart from any other podman user's on the machine.
[storage]
driver = "overlay"
graphroot = "$CT_HOME/storage"
runroot = "/run/vibemon-containers"
CONF
  fi
}

# podman-compose from PyPI, pinned: Debian's 1.0.3 both publishes ports and
# joins a network for a host-network service, and concatenates an override's
# health check with the base's. Its venv's Python (with PyYAML) runs the
# helpers here.
PODMAN_COMPOSE_VERSION=1.6.0
CT_VENV="$VIBEMON_HOME/tools/podman-compose-$PODMAN_COMPOSE_VERSION"
ct_ensure_compose() {
  if [ ! -x "$CT_VENV/bin/podman-compose" ]; then
    ct_log "installing podman-compose $PODMAN_COMPOSE_VERSION (PyPI) into $CT_VENV"
    python3 -m venv "$CT_VENV"
    "$CT_VENV/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION" >&2
  fi
}
