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
    sh("kind", "load", "docker-image", f"fmtune:{TAG}", "--name", CLUSTER)
    try:
        yield kubeconfig
    finally:
        if os.environ.get("FMTUNE_E2E_KEEP") != "1" and CLUSTER not in existing:
            sh("kind", "delete", "cluster", "--name", CLUSTER, check=False)
