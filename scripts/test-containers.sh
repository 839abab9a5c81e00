#!/usr/bin/env bash
# `pnpm test:containers`: the shipped Dockerfile and docker-compose.yml, built and run for
# real on a machine without Docker (podman as root through its Docker API, Debian's
# docker-compose 1.29), then everything stopped: containers, volumes, the podman service.
# Images stay cached (the base images are built once; the trias image is rebuilt from the
# tree each run). The last line is the plain summary CI reads.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
source test/containers/engine.sh
source test/containers/base-images.sh
PROJECT=trias-ct
start=$(date +%s)
export TRIAS_CT_DIR="$CT_STATE/runs"
mkdir -p "$TRIAS_CT_DIR"

remove_project() {
  # By label, so a half-started stack is removed too; only this test's project.
  local ids
  ids=$(podman ps -aq --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null || true)
  [ -z "$ids" ] || podman rm -f $ids >/dev/null 2>&1 || true
  ids=$(podman ps -aq --filter "network=${PROJECT}_default" 2>/dev/null || true)
  [ -z "$ids" ] || podman rm -f $ids >/dev/null 2>&1 || true
  podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT" 2>/dev/null | xargs -r podman volume rm -f >/dev/null 2>&1 || true
  podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true
}
cleanup() {
  local rc=$?
  remove_project
  rm -rf "$TRIAS_CT_DIR"
  podman image prune -f >/dev/null 2>&1 || true
  engine_stop
  echo "containers: took $(($(date +%s) - start)) s" >&2
  if [ "$rc" -ne 0 ] && [ -z "${SUMMARY_PRINTED:-}" ]; then
    echo "tests: 0 passed, 1 failed (the container setup failed before the tests ran)"
  fi
  exit "$rc"
}
trap cleanup EXIT

engine_install
engine_configure
engine_start
remove_project
base_images
echo "containers: building the trias image (docker-compose build)" >&2
# Building needs no secrets, but compose interpolates the whole file first: the required
# passwords get throw-away values for this step only (the stack's come from its own keys).
BUILD_ENV="$CT_STATE/build.env"
{
  cat deploy/.env.example
  grep -o '${[A-Z0-9_]*_PASSWORD' docker-compose.yml | sort -u | sed 's/^..//; s/$/=build-only/'
} >"$BUILD_ENV"
docker-compose -p "$PROJECT" -f docker-compose.yml --env-file "$BUILD_ENV" build keys >"$CT_STATE/build.log" 2>&1 ||
  { tail -30 "$CT_STATE/build.log" >&2; exit 1; }
CT_REBUILD=1 jaeger_standin_image
echo "containers: images ready after $(($(date +%s) - start)) s" >&2

SUMMARY_PRINTED=1
echo "containers: the compose stack (one NATS server, one replica of each agent)" >&2
node scripts/test.mjs --config test/vitest.slow.config.mjs test/containers/
remove_project
echo "containers: the cluster profile (three NATS servers at R3, two replicas of each agent)" >&2
TRIAS_CT_CLUSTER=1 node scripts/test.mjs --config test/vitest.slow.config.mjs test/containers/
