#!/usr/bin/env bash
# The container engine for `pnpm test:containers` on a machine without Docker: Debian's
# podman as root, its Docker-API socket for docker-compose 1.29, and a loop that runs
# healthchecks (podman runs them from systemd timers, and there is no systemd here).
# Sourced by scripts/test-containers.sh; every function is idempotent.
# Why each containers.conf line: see docs/containers.md, "Testing on a machine without Docker".

CT_STATE=${CT_STATE:-/var/tmp/trias-containers}
PODMAN_SOCK=${PODMAN_SOCK:-/run/podman/podman.sock}

engine_install() {
  local want=(podman fuse-overlayfs slirp4netns uidmap containernetworking-plugins debootstrap iptables docker-compose)
  local missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "containers: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

engine_configure() {
  local conf=/etc/containers/containers.conf
  if ! grep -q 'trias-test-containers' "$conf" 2>/dev/null; then
    mkdir -p /etc/containers
    # Without these: setrlimit "Operation not permitted" (default ulimits above this
    # sandbox's), then crun's "cgroups in hybrid mode not supported"; no systemd journal.
    cat >>"$conf" <<'CONF'
# trias-test-containers (written by test/containers/engine.sh)
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  fi
}

# Starts the Docker-API service and the healthcheck loop; their pids go in $CT_STATE.
engine_start() {
  mkdir -p "$CT_STATE" "$(dirname "$PODMAN_SOCK")"
  if ! curl -sf --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null 2>&1; then
    podman system service --time=0 "unix://$PODMAN_SOCK" >"$CT_STATE/service.log" 2>&1 &
    echo $! >"$CT_STATE/service.pid"
    for _ in $(seq 1 100); do
      curl -sf --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  curl -sf --unix-socket "$PODMAN_SOCK" http://d/_ping >/dev/null ||
    { echo "containers: the podman API did not answer on $PODMAN_SOCK" >&2; return 1; }
  (
    while true; do
      for id in $(podman ps -q --filter health=starting --filter health=healthy --filter health=unhealthy 2>/dev/null); do
        podman healthcheck run "$id" >/dev/null 2>&1 || true
      done
      sleep 2
    done
  ) >/dev/null 2>&1 &
  echo $! >"$CT_STATE/health.pid"
  export DOCKER_HOST="unix://$PODMAN_SOCK"
}

# Stops only what engine_start started (by pid), never other podman processes.
engine_stop() {
  for f in health service; do
    if [ -f "$CT_STATE/$f.pid" ]; then
      kill "$(cat "$CT_STATE/$f.pid")" 2>/dev/null || true
      rm -f "$CT_STATE/$f.pid"
    fi
  done
  rm -f "$PODMAN_SOCK"
}
