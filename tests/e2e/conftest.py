"""A kind cluster for the end-to-end test, created once per session (like kr8s' test suite).

Needs docker, kind, helm and kubectl; without any of them every e2e test is skipped, naming what
is missing. FMTUNE_E2E_KEEP=1 keeps the cluster afterwards; FMTUNE_E2E_CLUSTER names it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("docker", "kind", "helm", "kubectl")
CLUSTER = os.environ.get("FMTUNE_E2E_CLUSTER", "fmtune-e2e")
TAG = "0.1.0"


def missing_tools() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if "docker" not in missing and subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing.append("a running Docker engine")
    return missing


def sh(*argv: str, timeout: float = 1800, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, text=True, timeout=timeout, check=check, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def load_image(image: str, archive: Path) -> None:
    """Into every kind node, through an archive: `kind load docker-image` fails when Docker uses the
    containerd image store (kind#3795), the default from Docker 29; `docker save` then
    `kind load image-archive` works with either store."""
    sh("docker", "save", "--output", str(archive), image)
    sh("kind", "load", "image-archive", str(archive), "--name", CLUSTER)
    archive.unlink()


@pytest.fixture(scope="session")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"kind end-to-end test needs {', '.join(missing)} (not found)")
    kubeconfig = str(tmp_path_factory.mktemp("kube") / "config")
    existing = sh("kind", "get", "clusters", capture_output=True).stdout.split()
    if CLUSTER not in existing:
        Path("/tmp/fmtune-kind-volumes").mkdir(exist_ok=True)
        sh("kind", "create", "cluster", "--name", CLUSTER, "--config", "k8s/kind-config.yaml", "--wait", "120s")
    sh("kind", "export", "kubeconfig", "--name", CLUSTER, "--kubeconfig", kubeconfig)
    sh("images/build.sh", env={**os.environ, "ENGINE": "docker", "TAG": TAG})
    load_image(f"fmtune:{TAG}", tmp_path_factory.mktemp("images") / "fmtune.tar")
    try:
        yield kubeconfig
    finally:
        if os.environ.get("FMTUNE_E2E_KEEP") != "1" and CLUSTER not in existing:
            sh("kind", "delete", "cluster", "--name", CLUSTER, check=False)
