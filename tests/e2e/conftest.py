"""A kind cluster for the end-to-end scenarios, created once per session (like kr8s' test suite).

Needs docker with BuildKit (buildx: the image build hands pip its CA as a build secret), kind, helm
and kubectl; without any of them every e2e test is skipped, naming what is missing. Every image
the chart uses is in the node before the first install: fmtune is built here, the others are
pulled once by docker and loaded, so no pod pulls from a registry inside a deadline (the
deployer's window, `helm install --wait`). FMTUNE_E2E_KEEP=1 keeps the cluster afterwards;
FMTUNE_E2E_CLUSTER names it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("docker", "kind", "helm", "kubectl")
CLUSTER = os.environ.get("FMTUNE_E2E_CLUSTER", "fmtune-e2e")
TAG = "0.1.0"
IMAGE = f"localhost/fmtune:{TAG}"  # what images/build.sh names it, and the chart's default


def missing_tools() -> list[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if "docker" not in missing:
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            missing.append("a running Docker engine")
        elif subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode != 0:
            missing.append("docker buildx (BuildKit, for the image build's secret)")
    return missing


def sh(*argv: str, timeout: float = 1800, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(argv), flush=True)
    return subprocess.run(argv, text=True, timeout=timeout, check=check, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def chart_images(*helm_args: str) -> set[str]:
    """Every container image of the chart as rendered with ``helm_args``, init containers and the
    `helm test` pod included."""
    rendered = sh("helm", "template", "fmtune", "./helm", *helm_args, capture_output=True).stdout
    images = set()
    for doc in yaml.safe_load_all(rendered):
        if not doc or doc["kind"] not in ("Job", "Deployment", "Pod"):
            continue
        spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
        images |= {c["image"] for c in spec.get("initContainers", []) + spec["containers"]}
    return images


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
        pytest.skip(f"kind end-to-end scenarios need {', '.join(missing)} (not found)")
    kubeconfig = str(tmp_path_factory.mktemp("kube") / "config")
    existing = sh("kind", "get", "clusters", capture_output=True).stdout.split()
    if CLUSTER not in existing:
        Path("/tmp/fmtune-kind-volumes").mkdir(exist_ok=True)
        sh("kind", "create", "cluster", "--name", CLUSTER, "--config", "k8s/kind-config.yaml", "--wait", "120s")
    sh("kind", "export", "kubeconfig", "--name", CLUSTER, "--kubeconfig", kubeconfig)
    sh("images/build.sh", env={**os.environ, "ENGINE": "docker", "TAG": TAG, "DOCKER_BUILDKIT": "1"})
    archives = tmp_path_factory.mktemp("images")
    for index, image in enumerate(sorted(chart_images())):
        if image != IMAGE:
            sh("docker", "pull", image)
        load_image(image, archives / f"{index}.tar")
    try:
        yield kubeconfig
    finally:
        if os.environ.get("FMTUNE_E2E_KEEP") != "1" and CLUSTER not in existing:
            sh("kind", "delete", "cluster", "--name", CLUSTER, check=False)
