"""The chart on a real kind cluster, as scenarios an operator goes through: install, search, deploy
and predict (with the dashboard, the NetworkPolicy and a worker pod deleted mid-search checked while
the search runs), `helm test`, an upgrade raising max_trials, a rollback, and an uninstall and
reinstall on the kept volume. Each scenario's setup is a module fixture that builds on the one
before, so any test can run alone; the defaults' requests fit kind's one node beside its control
plane (tests/chart/test_cluster_fit_chart.py)."""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from fmtune.client import FmtuneClient

from .conftest import IMAGE, sh

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]
RELEASE, NAMESPACE = "fmtune", "fmtune-e2e"
TINY = {
    "name": "e2e",
    "budget_minutes": None,  # no preset budget: the trials asked for are the trials run (a null is "off")
    "search": {"max_trials": 3, "epochs": 2, "train_samples": 6000, "algorithm": "random", "asha": {"enabled": False}},
    "retrain": {"max_epochs": 2, "patience": 1, "schedule": "plateau", "holdout_fraction": 0.05},
}
# Enough test images for helm test's count to tell the trained model from a wrong one (chance: 10%).
HELM_TEST_SAMPLES = 100
WORKER_LABELS = "app.kubernetes.io/name=fmtune,app.kubernetes.io/instance=fmtune,app.kubernetes.io/component=worker"


def kubectl(kubeconfig: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return sh("kubectl", "--kubeconfig", kubeconfig, "-n", NAMESPACE, *args, capture_output=True, **kwargs)


def helm(kubeconfig: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return sh("helm", "--kubeconfig", kubeconfig, "--namespace", NAMESPACE, *args, **kwargs)


def values_file(directory: Path, max_trials: int) -> str:
    """The scenarios' values: a tiny search, any retrained model deployed (the gate is not what is
    tested), the volume kept on uninstall (the reinstall scenario needs it)."""
    values = {
        "experiment": {
            "preset": "quick",
            "overrides": {**TINY, "search": {**TINY["search"], "max_trials": max_trials}},
        },
        "coordinator": {"gateTolerance": 1},
        "storage": {"keepOnUninstall": True},
        "helmTest": {"samples": HELM_TEST_SAMPLES},
    }
    path = directory / f"values-{max_trials}.yaml"
    path.write_text(yaml.safe_dump(values))  # None is written as null, which the chart keeps
    return str(path)


def jobs(kubeconfig: str) -> list[dict]:
    listed = kubectl(kubeconfig, "get", "jobs", "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json").stdout
    return list(json.loads(listed)["items"])


def coordinator_job(revision: int) -> str:
    return f"{RELEASE}-coordinator-r{revision}"


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


def wait_for_job(kubeconfig: str, name: str, timeout: float = 1800) -> str:
    """Wait until the Job completes (failing at once if one fails); its logs."""
    deadline = time.monotonic() + timeout
    while name not in fail_if_a_job_failed(kubeconfig):
        if time.monotonic() > deadline:
            pytest.fail(f"job {name} neither complete nor failed after {timeout:.0f}s")
        time.sleep(10)
    return kubectl(kubeconfig, "logs", f"job/{name}").stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def port_forward(kubeconfig: str, target: str, *ports: int) -> Iterator[list[int]]:
    """`kubectl port-forward` of ``ports`` of ``target`` to free local ports, while the block runs."""
    local = [free_port() for _ in ports]
    forward = subprocess.Popen(
        ["kubectl", "--kubeconfig", kubeconfig, "-n", NAMESPACE, "port-forward", target]
        + [f"{mine}:{theirs}" for mine, theirs in zip(local, ports, strict=True)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield local
    finally:
        forward.terminate()
        forward.wait(timeout=30)


def served_versions(kubeconfig: str, images: int = 5) -> set[int]:
    """The model versions that answer predictions over gRPC and REST (through port-forward), which
    must agree with each other."""
    pixels = np.random.default_rng(0).integers(0, 256, (images, 28, 28), np.uint8)
    with port_forward(kubeconfig, f"svc/{RELEASE}-serving", 8500, 8501) as (grpc_port, rest_port):
        answers, versions = [], set()
        for target in (f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}"):
            with FmtuneClient(target, timeout=30) as client:
                client.wait_until_ready(timeout=300)
                predictions = client.predict(pixels)
                assert len(predictions) == images
                answers.append([p.class_id for p in predictions])
                versions |= {p.model_version for p in predictions}
    assert answers[0] == answers[1]
    return versions


def serving_replicas(kubeconfig: str) -> tuple[str, str]:
    """(spec.replicas, status.readyReplicas) of the serving Deployment."""
    out = kubectl(
        kubeconfig,
        "get",
        f"deployment/{RELEASE}-serving",
        "-o",
        "jsonpath={.spec.replicas} {.status.readyReplicas}",
    ).stdout.split()
    return out[0], (out[1] if len(out) > 1 else "0")


# -- scenario 1: install, and what happens while the first search runs ---------------------------


@pytest.fixture(scope="module")
def values_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("values")


@dataclass(frozen=True)
class Install:
    """A release installed with `helm install --wait`: the kubeconfig, and serving's
    (spec.replicas, readyReplicas) when --wait returned."""

    kubeconfig: str
    serving_at_install: tuple[str, str]


@pytest.fixture(scope="module")
def installed(kind_cluster: str, values_dir: Path) -> Iterator[Install]:
    """`helm install --wait`: it returns while the search runs, since a serving pod with no version
    published is ready (there is nothing to wait for)."""
    values = values_file(values_dir, 3)
    helm(kind_cluster, "install", RELEASE, "./helm", "--create-namespace", "-f", values, "--wait", "--timeout", "5m")
    try:
        yield Install(kind_cluster, serving_replicas(kind_cluster))
    finally:
        helm(kind_cluster, "uninstall", RELEASE, "--wait", check=False)
        # The kept volume goes with the namespace, so a rerun on a kept cluster starts empty.
        sh("kubectl", "--kubeconfig", kind_cluster, "delete", "namespace", NAMESPACE, "--timeout=300s", check=False)


@pytest.fixture(scope="module")
def dashboard(installed: Install) -> tuple[str, dict]:
    """The dashboard's page and view, fetched through port-forward while the search runs."""
    kubectl(
        installed.kubeconfig,
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app.kubernetes.io/component=coordinator,fmtune.io/revision=r1",
        "--timeout=300s",
    )
    with port_forward(installed.kubeconfig, f"svc/{RELEASE}-oracle", 8080) as (port,):
        deadline, last = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
                    html = page.read().decode()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/view", timeout=10) as view:
                    return html, json.loads(view.read())
            except OSError as exc:  # the coordinator is still loading its data, or the forward starting
                last = exc
                time.sleep(2)
    pytest.fail(f"no dashboard through port-forward within 120s: {last}")


def probe_oracle(kubeconfig: str, name: str, labels: str) -> tuple[str, str]:
    """A pod with ``labels`` that opens a TCP connection to the oracle: (its phase, its log)."""
    code = "import socket; socket.create_connection(('fmtune-oracle', 8000), timeout=15); print('connected')"
    kubectl(
        kubeconfig,
        "run",
        name,
        f"--image={IMAGE}",
        "--image-pull-policy=Never",
        "--restart=Never",
        f"--labels={labels}",
        "--command",
        "--",
        "/opt/fmtune/bin/python",
        "-c",
        code,
    )
    deadline, phase = time.monotonic() + 180, ""
    while phase not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        time.sleep(3)
        phase = kubectl(kubeconfig, "get", "pod", name, "-o", "jsonpath={.status.phase}").stdout
    log = kubectl(kubeconfig, "logs", name, check=False).stdout
    kubectl(kubeconfig, "delete", "pod", name, "--wait=false", check=False)
    return phase, log


@pytest.fixture(scope="module")
def policy_probes(dashboard: tuple[str, dict], installed: Install) -> dict[str, tuple[str, str]]:
    """While the coordinator serves the oracle: a pod labelled as a worker, and one that is not."""
    return {
        "worker": probe_oracle(installed.kubeconfig, "probe-worker", WORKER_LABELS),
        "intruder": probe_oracle(installed.kubeconfig, "probe-intruder", WORKER_LABELS.replace("=worker", "=intruder")),
    }


@pytest.fixture(scope="module")
def deleted_worker(policy_probes: dict, installed: Install) -> str:
    """Worker 0's pod, deleted as soon as it has started a trial (as an eviction or a node drain
    would): the name of the pod deleted."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        pods = json.loads(
            kubectl(
                installed.kubeconfig,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/component=worker,fmtune.io/revision=r1",
                "-o",
                "json",
            ).stdout
        )["items"]
        for pod in pods:
            index = pod["metadata"].get("annotations", {}).get("batch.kubernetes.io/job-completion-index")
            if index != "0" or pod["status"].get("phase") != "Running":
                continue
            name = pod["metadata"]["name"]
            if re.search(r"trial \d+ start", kubectl(installed.kubeconfig, "logs", name, check=False).stdout):
                kubectl(installed.kubeconfig, "delete", "pod", name, "--wait=false")
                return str(name)
        fail_if_a_job_failed(installed.kubeconfig)
        time.sleep(3)
    pytest.fail("worker 0 never started a trial")


@dataclass(frozen=True)
class Run:
    """A coordinator run that completed: the cluster's kubeconfig and the coordinator's logs."""

    kubeconfig: str
    logs: str


@pytest.fixture(scope="module")
def deployed(deleted_worker: str, installed: Install) -> Run:
    """The first search run to its end: retrained and deployed."""
    return Run(installed.kubeconfig, wait_for_job(installed.kubeconfig, coordinator_job(1)))


def test_install_wait_returns_during_the_search_with_serving_at_its_replicas(installed: Install) -> None:
    """Serving runs serving.replicas from the start, ready with no version to load, so `--wait`
    does not hang on a search of hours (nor uninstall it with --rollback-on-failure)."""
    assert installed.serving_at_install == ("1", "1")
    assert coordinator_job(1) not in fail_if_a_job_failed(installed.kubeconfig)


def test_the_dashboard_answers_through_port_forward(dashboard: tuple[str, dict]) -> None:
    html, view = dashboard
    assert "<html" in html.lower()
    assert '"e2e"' in json.dumps(view)  # the experiment's own state


def test_the_network_policy_admits_workers_and_refuses_other_pods(policy_probes: dict) -> None:
    assert policy_probes["worker"] == ("Succeeded", "connected\n"), policy_probes["worker"]
    assert policy_probes["intruder"][0] == "Failed", policy_probes["intruder"]  # dropped: the connection timed out


def test_a_worker_pod_deleted_mid_trial_is_replaced_and_the_search_finishes(deleted_worker: str, deployed: Run) -> None:
    assert re.search(r"trial 3/3 done: val_accuracy=", deployed.logs), deployed.logs[-3000:]
    (workers,) = [j for j in jobs(deployed.kubeconfig) if j["metadata"]["name"] == f"{RELEASE}-workers-r1"]
    # A deleted pod is a disruption: the podFailurePolicy ignores it, and index 0 ran again.
    assert not workers["status"].get("failedIndexes"), workers["status"]
    assert workers["status"].get("succeeded") == 2, workers["status"]


def test_the_search_deploys_and_both_transports_predict(deployed: Run) -> None:
    assert "deployed version 1" in deployed.logs, deployed.logs[-3000:]
    record = kubectl(deployed.kubeconfig, "get", "configmap", f"{RELEASE}-deployments", "-o", "jsonpath={.data.v1}")
    assert json.loads(record.stdout)["version"] == 1
    assert serving_replicas(deployed.kubeconfig) == ("1", "1")  # the chart's count; the deployer scaled nothing
    assert served_versions(deployed.kubeconfig) == {1}


def test_helm_test_makes_a_real_prediction(deployed: Run) -> None:
    done = helm(deployed.kubeconfig, "test", RELEASE, "--logs", capture_output=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"(\d+)/(\d+) correct", done.stdout)
    assert found and int(found.group(2)) == HELM_TEST_SAMPLES, done.stdout
    right = int(found.group(1))
    measured = re.search(r"test accuracy (\d\.\d+); model", deployed.logs)
    assert measured, deployed.logs[-3000:]
    accuracy = float(measured.group(1))
    # Two epochs on 6,000 Fashion-MNIST images leave an MLP well above 70%; below is a broken search.
    assert accuracy >= 0.7, deployed.logs[-3000:]
    # The served model is the one the coordinator measured: its count on a random sample of the test
    # set is binomial, and four standard deviations below the mean fails a correct release about once
    # in 10,000 runs.
    spread = math.sqrt(HELM_TEST_SAMPLES * accuracy * (1 - accuracy))
    assert right >= HELM_TEST_SAMPLES * accuracy - 4 * spread, (right, accuracy, done.stdout)


# -- scenario 2: helm upgrade raising max_trials ---------------------------------------------------


@pytest.fixture(scope="module")
def upgraded(deployed: Run, values_dir: Path) -> Run:
    """`helm upgrade` to 5 trials after the first search finished: revision 2's Jobs resume it."""
    helm(
        deployed.kubeconfig, "upgrade", RELEASE, "./helm", "-f", values_file(values_dir, 5), "--wait", "--timeout", "5m"
    )
    return Run(deployed.kubeconfig, wait_for_job(deployed.kubeconfig, coordinator_job(2)))


def test_an_upgrade_raising_max_trials_runs_the_new_trials_and_deploys_again(upgraded: Run) -> None:
    assert re.search(r"trial 5/5 done: val_accuracy=", upgraded.logs), upgraded.logs[-3000:]
    assert "deployed version 2" in upgraded.logs, upgraded.logs[-3000:]
    assert served_versions(upgraded.kubeconfig) == {2}
    assert serving_replicas(upgraded.kubeconfig) == ("1", "1")


# -- scenario 3: helm rollback -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rolled_back(upgraded: Run) -> tuple[tuple[str, str], Run]:
    """`helm rollback` to revision 1 (3 trials, fewer than the 5 run): serving's (spec.replicas,
    readyReplicas) right after it, and revision 3's coordinator run, which finds the search over
    and retrains."""
    helm(upgraded.kubeconfig, "rollback", RELEASE, "1", "--wait", "--timeout", "5m")
    replicas = serving_replicas(upgraded.kubeconfig)
    return replicas, Run(upgraded.kubeconfig, wait_for_job(upgraded.kubeconfig, coordinator_job(3)))


def test_a_rollback_keeps_serving_at_its_replicas(rolled_back: tuple[tuple[str, str], Run]) -> None:
    replicas, run = rolled_back
    assert replicas == ("1", "1")  # the rendered count, not zero: version 2 served on
    assert "search already finished" in run.logs and "deployed version 3" in run.logs, run.logs[-3000:]
    assert served_versions(run.kubeconfig) == {3}


# -- scenario 4: uninstall, then reinstall on the kept volume -------------------------------------


@pytest.fixture(scope="module")
def reinstalled(rolled_back: tuple[tuple[str, str], Run], values_dir: Path) -> Run:
    """`helm uninstall` keeps the claim; `helm install` with the rollback's values finds that very
    config finished and deploys nothing, and --wait returns once serving has loaded the model."""
    kubeconfig = rolled_back[1].kubeconfig
    helm(kubeconfig, "uninstall", RELEASE, "--wait")
    kubectl(kubeconfig, "get", "pvc", f"{RELEASE}-data")  # kept (helm.sh/resource-policy: keep)
    helm(kubeconfig, "install", RELEASE, "./helm", "-f", values_file(values_dir, 3), "--wait", "--timeout", "5m")
    return Run(kubeconfig, wait_for_job(kubeconfig, coordinator_job(1)))


def test_a_reinstall_on_the_kept_volume_still_serves(reinstalled: Run) -> None:
    assert "already ran to the end with this config" in reinstalled.logs, reinstalled.logs[-3000:]
    assert serving_replicas(reinstalled.kubeconfig) == ("1", "1")
    assert served_versions(reinstalled.kubeconfig) == {3}  # the model deployed before the uninstall
