"""helm install on a real kind cluster: a tiny search, retraining, TF Serving, the SDK, helm test."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pytest

from fmtune.client import FmtuneClient

from .conftest import sh

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]
RELEASE, NAMESPACE = "fmtune", "fmtune-e2e"
TINY = {
    "name": "e2e",
    "search": {"max_trials": 3, "epochs": 1, "train_samples": 3000, "algorithm": "random"},
    "retrain": {"max_epochs": 2, "patience": 1},
}
SMALL = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}}


def kubectl(kubeconfig: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return sh("kubectl", "--kubeconfig", kubeconfig, "-n", NAMESPACE, *args, capture_output=True, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def release(kind_cluster: str) -> Iterator[str]:
    values = {
        "experiment": {"preset": "quick", "overrides": TINY},
        "workers": {"count": 2, "resources": SMALL},
        "coordinator": {"resources": SMALL},
        "serving": {"resources": SMALL},
    }
    sh(
        "helm",
        "--kubeconfig",
        kind_cluster,
        "install",
        RELEASE,
        "./helm",
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--set-json",
        f"experiment={json.dumps(values['experiment'])}",
        "--set-json",
        f"workers={json.dumps(values['workers'])}",
        "--set-json",
        f"coordinator.resources={json.dumps(SMALL)}",
        "--set-json",
        f"serving.resources={json.dumps(SMALL)}",
    )
    try:
        yield kind_cluster
    finally:
        sh("helm", "--kubeconfig", kind_cluster, "uninstall", RELEASE, "--namespace", NAMESPACE, check=False)


def test_workers_log_their_trials(release: str) -> None:
    deadline, logs = time.monotonic() + 900, ""
    while time.monotonic() < deadline:
        logs = kubectl(
            release, "logs", "-l", "app.kubernetes.io/component=worker", "--prefix", "--tail", "-1", check=False
        ).stdout
        if re.search(r"trial \d+ epoch 1/1: .*val_accuracy=", logs):
            break
        time.sleep(10)
    assert re.search(r"trial \d+ start: .*batch_size=", logs), logs[-3000:]
    assert re.search(r"trial \d+ epoch 1/1: .*val_accuracy=", logs), logs[-3000:]


def test_search_retrains_and_deploys_then_predicts_over_both_transports(release: str) -> None:
    job = kubectl(
        release,
        "get",
        "jobs",
        "-l",
        "app.kubernetes.io/component=coordinator",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ).stdout
    kubectl(release, "wait", f"job/{job}", "--for=condition=complete", "--timeout=1800s", timeout=1900)
    coordinator_logs = kubectl(release, "logs", f"job/{job}").stdout
    assert re.search(r"trial 3/3 done: val_accuracy=", coordinator_logs), coordinator_logs[-3000:]
    assert "deployed version 1" in coordinator_logs
    record = kubectl(release, "get", "configmap", f"{RELEASE}-deployments", "-o", "jsonpath={.data.v1}").stdout
    assert json.loads(record)["version"] == 1
    kubectl(release, "rollout", "status", f"deployment/{RELEASE}-serving", "--timeout=300s")

    grpc_port, rest_port = free_port(), free_port()
    forward = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            release,
            "-n",
            NAMESPACE,
            "port-forward",
            f"svc/{RELEASE}-serving",
            f"{grpc_port}:8500",
            f"{rest_port}:8501",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), np.uint8)
        answers = []
        for target in (f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}"):
            with FmtuneClient(target, timeout=30) as client:
                assert client.wait_until_ready(timeout=300) == 1
                predictions = client.predict(images)
                assert len(predictions) == 5 and {p.model_version for p in predictions} == {1}
                answers.append([p.class_id for p in predictions])
        assert answers[0] == answers[1]
    finally:
        forward.terminate()


def test_helm_test_makes_a_real_prediction(release: str) -> None:
    done = sh(
        "helm",
        "--kubeconfig",
        release,
        "test",
        RELEASE,
        "--namespace",
        NAMESPACE,
        "--logs",
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\d+/8 correct", done.stdout), done.stdout
