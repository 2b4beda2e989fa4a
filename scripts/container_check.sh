#!/usr/bin/env bash
# Build the service image (Dockerfile) and the pipeline image (pipelines/Dockerfile) where no image registry is
# reachable, then run `ldh serve` in it for a C-STORE round trip (tests/test_deploy_container.py). The base images
# are Debian bookworm root file systems made by mmdebstrap from the apt mirror and imported into podman; pip and
# npm reach PyPI / npm through the host network. Not part of CI (README, Deploy). Needs root; installs podman, runc and
# mmdebstrap from apt when missing. Usage: scripts/container_check.sh [--cold] (--cold: no
# layer cache, for timing a full build).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${LDH_IMAGE_TAG:-check}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=()
[ "${1:-}" = "--cold" ] && cache=(--no-cache)
need=()
for tool in podman runc mmdebstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then  # Debian packages of the same names, as scripts/setup.sh installs its peers
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# runc with host networking (no bridge or iptables needed). podman asks for rlimits above this machine's hard
# limits by default, which the kernel refuses ("error setting rlimit type 7: operation not permitted"): ask for
# the current open-files limit, and a process limit runc may set (LDH_CONTAINER_NPROC)
opts="--runtime runc --network host --ulimit nofile=$(ulimit -Hn):$(ulimit -Hn) --ulimit nproc=${LDH_CONTAINER_NPROC:-32768}:${LDH_CONTAINER_NPROC:-32768}"
# shellcheck disable=SC2206
run_opts=($opts)

base() {  # base image NAME from a bookworm root file system with PACKAGES (made once)
  local name=$1 packages=$2 tar
  podman image exists "$name" && return
  tar=$(mktemp --suffix=.tar)
  mmdebstrap --variant=minbase --include="$packages" bookworm "$tar" "$mirror"
  podman import "$tar" "$name" >/dev/null
  rm -f "$tar"
}
base localhost/ldh-base-python:bookworm python3,python3-venv,python-is-python3,ca-certificates
base localhost/ldh-base-node:bookworm nodejs,npm,ca-certificates

# docker format: OCI image configs have no HEALTHCHECK. The host's CA bundle is mounted for the build's downloads
# (an egress proxy that re-signs TLS needs its CA; elsewhere it is the same public bundle); it is not in the image.
start=$(date +%s)
podman build "${run_opts[@]}" "${cache[@]}" --format docker \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  --build-arg BASE_IMAGE=localhost/ldh-base-python:bookworm --build-arg NODE_IMAGE=localhost/ldh-base-node:bookworm \
  -t "localhost/ldh-assist:$tag" .
built=$(date +%s)
podman build "${run_opts[@]}" --format docker --build-arg "SERVICE_IMAGE=localhost/ldh-assist:$tag" \
  -f pipelines/Dockerfile -t "localhost/ldh-pipeline:$tag" .
podman run --rm "${run_opts[@]}" "localhost/ldh-pipeline:$tag"  # its CMD imports the pipeline definition
size=$(podman image inspect --format '{{.Size}}' "localhost/ldh-assist:$tag")
echo "container_check: service image built in $((built - start)) s ($([ ${#cache[@]} -gt 0 ] && echo cold || echo cached)), $((size / 1000000)) MB; pipeline image imports its pipeline"

LDH_CONTAINER_IMAGE="localhost/ldh-assist:$tag" LDH_CONTAINER_RUN_OPTS="$opts" \
  .venv/bin/python -m pytest tests/test_deploy_container.py -q -s -p no:cacheprovider
