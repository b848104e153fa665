"""helm install on a real kind cluster: a tiny search, retraining, TF Serving, the SDK, helm test."""

from __future__ import annotations

import json
import math
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
    "budget_minutes": None,
    "search": {"max_trials": 3, "epochs": 1, "train_samples": 3000, "algorithm": "random", "asha": {"enabled": False}},
    "retrain": {"max_epochs": 2, "patience": 1, "schedule": "plateau", "holdout_fraction": 0.05},
}
SMALL = {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}}
# Enough test images for helm test's count to tell the trained model from a wrong one (chance: 10%).
HELM_TEST_SAMPLES = 100


def kubectl(kubeconfig: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return sh("kubectl", "--kubeconfig", kubeconfig, "-n", NAMESPACE, *args, capture_output=True, **kwargs)


def jobs(kubeconfig: str) -> list[dict]:
    listed = kubectl(kubeconfig, "get", "jobs", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json").stdout
    return list(json.loads(listed)["items"])


def fail_if_a_job_failed(kubeconfig: str) -> set[str]:
    """The names of the release's Jobs that are Complete; pytest.fail at once, with the logs, when one
    has failed (`kubectl wait --for=condition=complete` would sit out its whole timeout instead)."""
    complete = set()
    for job in jobs(kubeconfig):
        name = job["metadata"]["name"]
        conditions = {c["type"]: c for c in job.get("status", {}).get("conditions", []) if c["status"] == "True"}
        failed = conditions.get("Failed") or conditions.get("FailureTarget")
        if failed:
            logs = kubectl(kubeconfig, "logs", f"job/{name}", "--all-containers", "--tail", "200", check=False)
            pytest.fail(f"job {name} failed ({failed.get('reason')}: {failed.get('message')}):\n{logs.stdout[-5000:]}")
        if "Complete" in conditions:
            complete.add(name)
    return complete


def wait_for_job(kubeconfig: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while name not in fail_if_a_job_failed(kubeconfig):
        if time.monotonic() > deadline:
            pytest.fail(f"job {name} neither complete nor failed after {timeout:.0f}s")
        time.sleep(10)


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
        # A rerun on a kept cluster starts from an empty volume.
        "--set",
        "storage.keepOnUninstall=false",
        "--set",
        f"helmTest.samples={HELM_TEST_SAMPLES}",
        # Serving has no pod until the first deploy, so there is nothing here that waits for a model.
        "--wait",
        "--timeout",
        "5m",
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
        fail_if_a_job_failed(release)
        time.sleep(10)
    assert re.search(r"trial \d+ start: .*batch_size=", logs), logs[-3000:]
    assert re.search(r"trial \d+ epoch 1/1: .*val_accuracy=", logs), logs[-3000:]


def test_search_retrains_and_deploys_then_predicts_over_both_transports(release: str) -> None:
    (job,) = [
        j["metadata"]["name"]
        for j in jobs(release)
        if j["metadata"]["labels"]["app.kubernetes.io/component"] == "coordinator"
    ]
    wait_for_job(release, job, timeout=1800)
    coordinator_logs = kubectl(release, "logs", f"job/{job}").stdout
    assert re.search(r"trial 3/3 done: val_accuracy=", coordinator_logs), coordinator_logs[-3000:]
    assert "deployed version 1" in coordinator_logs
    record = kubectl(release, "get", "configmap", f"{RELEASE}-deployments", "-o", "jsonpath={.data.v1}").stdout
    assert json.loads(record)["version"] == 1
    # Serving started at zero replicas; the deployer scaled it up to serving.replicas.
    replicas = kubectl(release, "get", f"deployment/{RELEASE}-serving", "-o", "jsonpath={.spec.replicas}").stdout
    assert replicas == "1", replicas
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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
        forward.wait(timeout=30)


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
    found = re.search(r"(\d+)/(\d+) correct", done.stdout)
    assert found and int(found.group(2)) == HELM_TEST_SAMPLES, done.stdout
    right = int(found.group(1))
    (job,) = [
        j["metadata"]["name"]
        for j in jobs(release)
        if j["metadata"]["labels"]["app.kubernetes.io/component"] == "coordinator"
    ]
    coordinator_logs = kubectl(release, "logs", f"job/{job}").stdout
    measured = re.search(r"test accuracy (\d\.\d+); model", coordinator_logs)
    assert measured, coordinator_logs[-3000:]
    accuracy = float(measured.group(1))
    # Two epochs on Fashion-MNIST's 57,000 images leave an MLP above 80%; well below that is a broken search.
    assert accuracy >= 0.7, coordinator_logs[-3000:]
    # The served model is the one the coordinator measured: its count on a random sample of the test
    # set is binomial, and four standard deviations below the mean fails a correct release about once
    # in 10,000 runs (no Fashion-MNIST test image has a light border, so none is inverted first).
    spread = math.sqrt(HELM_TEST_SAMPLES * accuracy * (1 - accuracy))
    assert right >= HELM_TEST_SAMPLES * accuracy - 4 * spread, (right, accuracy, done.stdout)
