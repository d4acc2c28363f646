#!/usr/bin/env bash
# Start a private Docker daemon (no systemd here) and build a local Debian base image with
# Python, since no container registry is reachable. Prints the DOCKER_HOST to use.
# Usage: eval "$(scripts/docker-env.sh start)"; scripts/docker-env.sh stop
set -euo pipefail
ROOT=${OCLIP_DOCKER_ROOT:-/tmp/oclip-docker}
SOCK=$ROOT/docker.sock
BASE_IMAGE=${OCLIP_BASE_IMAGE:-oclip-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

need() {
  command -v "$1" >/dev/null || {
    [ "$(id -u)" = 0 ] || { echo "$1 missing: apt-get install $2 (as root)" >&2; exit 1; }
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $2 >&2
  }
}

start() {
  need dockerd "docker.io runc"
  need debootstrap debootstrap
  mkdir -p "$ROOT/data" "$ROOT/exec"
  if ! DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1; then
    nohup dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=overlay2 \
      --data-root "$ROOT/data" --exec-root "$ROOT/exec" --pidfile "$ROOT/pid" \
      -H "unix://$SOCK" >"$ROOT/dockerd.log" 2>&1 &
    for _ in $(seq 60); do DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  export DOCKER_HOST=unix://$SOCK
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
      bookworm "$rootfs" "$MIRROR" >&2
    tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >&2
    rm -rf "$rootfs"
  fi
  echo "export DOCKER_HOST=unix://$SOCK"
}

stop() {
  [ -f "$ROOT/pid" ] && kill -TERM "$(cat "$ROOT/pid")" 2>/dev/null || true
}

"${1:-start}"
