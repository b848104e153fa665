"""Locating helm 3, helm 4 and kubernetes-validate, and rendering the chart."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm"
VALUES = {
    "default": [],
    "gpu": [ROOT / "k8s/values/gpu.yaml"],
    "gke-gpu": [ROOT / "k8s/values/gpu.yaml", ROOT / "k8s/values/gke-gpu.yaml"],
    "large": [ROOT / "k8s/values/large.yaml"],
}
RENDERED = ROOT / "k8s/rendered/default.yaml"
KUBERNETES_VERSIONS = ["1.29.0", "1.33.0", "1.37.0"]


def helm(major: int) -> str:
    local = ROOT / ".tools" / f"helm{major}"
    if local.is_file():
        return str(local)
    found = shutil.which("helm")
    if found and subprocess.run([found, "version", "--short"], capture_output=True, text=True).stdout.startswith(
        f"v{major}."
    ):
        return found
    raise FileNotFoundError(f"helm {major} not found: run scripts/fetch-tools.sh (make test does)")


def render(
    major: int = 4, values: str = "default", *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [helm(major), "template", "fmtune", str(CHART), "--namespace", "default"]
    for file in VALUES[values]:
        argv += ["-f", str(file)]
    return subprocess.run([*argv, *extra], capture_output=True, text=True, check=check)


class DuplicateKeyError(ValueError):
    """A mapping repeats a key: helm keeps the last one, kubectl apply, Argo CD and kustomize refuse it."""


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys instead of keeping the last one."""


def _mapping_without_duplicates(loader: StrictLoader, node: yaml.MappingNode) -> dict:
    keys = [loader.construct_object(key, deep=True) for key, _ in node.value]
    repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
    if repeated:
        raise DuplicateKeyError(f"duplicate key(s) {repeated}{node.start_mark}")
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def objects(text: str) -> list[dict]:
    return [doc for doc in yaml.load_all(text, Loader=StrictLoader) if doc]


def validator() -> list[str]:
    exe = Path(sys.executable).parent / "kubernetes-validate"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "kubernetes_validate"]
