#!/usr/bin/env bash
# Builds localhost/fmtune:TAG (and localhost/fmtune-gpu:TAG with GPU=1) with docker, or with podman when
# docker is absent: the fully qualified names the chart uses by default (load them into kind, or push
# them to your registry and set image.repository). Docker builds with BuildKit (the build secret needs it).
#   images/build.sh                    CPU image
#   GPU=1 images/build.sh              CPU and GPU images
#   BASE_IMAGE=localhost/debian-python:bookworm images/build.sh   a locally made base (no registry)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${TAG:-0.1.0}
engine=${ENGINE:-$(command -v docker >/dev/null && docker info >/dev/null 2>&1 && echo docker || echo podman)}
export DOCKER_BUILDKIT=1
args=()
[[ -n ${BASE_IMAGE:-} ]] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
# Outbound TLS through an intercepting proxy: hand its CA to pip as a build secret.
ca=${PIP_CA:-/etc/ssl/certs/ca-certificates.crt}
[[ -s $ca ]] && args+=(--secret "id=pip_ca,src=$ca")
"$engine" build -f images/Dockerfile -t "localhost/fmtune:$tag" "${args[@]}" .
if [[ ${GPU:-0} == 1 ]]; then
  gpu_args=(--build-arg "CPU_IMAGE=localhost/fmtune:$tag")
  [[ -s $ca ]] && gpu_args+=(--secret "id=pip_ca,src=$ca")
  "$engine" build -f images/Dockerfile.gpu -t "localhost/fmtune-gpu:$tag" "${gpu_args[@]}" .
fi
