"""The chart against what real clusters need (issue 32): small nodes, nulls in values, the deploy
window, TF Serving's threads, image names, GKE's GPU selector, `helm test` without serving, and a
volume whose root the pods' user cannot write.
Rendered with helm 3 and 4; no cluster needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .tools import VALUES, objects, render

pytestmark = pytest.mark.timeout(300)

# What kind's control plane requests on its one node: kube-apiserver 250m, kube-controller-manager
# 200m, etcd 100m, kube-scheduler 100m, two CoreDNS pods 100m each, kindnet 100m.
KIND_CONTROL_PLANE_CPU = 0.95


def cpu(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity in cores.

    >>> cpu("250m"), cpu("2"), cpu(1.5)
    (0.25, 2.0, 1.5)
    """
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def named(docs: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def experiment_yaml(docs: list[dict]) -> str:
    return str(named(docs, "ConfigMap", "fmtune-config")["data"]["experiment.yaml"])


def cpu_requested_at_once(docs: list[dict]) -> float:
    """CPU requested by the pods that run together: a pod per Job parallelism or Deployment replica
    (the `helm test` pod runs after the search, when the Jobs' pods are gone)."""
    total = 0.0
    for doc in docs:
        if doc["kind"] == "Job":
            pods = doc["spec"]["parallelism"]
        elif doc["kind"] == "Deployment":
            pods = doc["spec"]["replicas"]
        else:
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            total += pods * cpu(container["resources"]["requests"]["cpu"])
    return total


@pytest.mark.parametrize("major", [3, 4])
def test_the_defaults_fit_a_two_cpu_kind_node(major: int) -> None:
    """The quick preset is the one documented for 2 cores: with kind's control plane on the same
    node, every pod must be schedulable, or the workers stay Pending until the worker wait ends
    the search."""
    docs = objects(render(major).stdout)
    (coordinator,) = [d for d in docs if d["kind"] == "Job" and "coordinator" in d["metadata"]["name"]]
    assert "quick" in coordinator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert cpu_requested_at_once(docs) <= 2 - KIND_CONTROL_PLANE_CPU


@pytest.mark.parametrize("major", [3, 4])
def test_a_null_override_switches_the_presets_value_off(major: int, tmp_path: Path) -> None:
    """Sprig's merge drops nil values: `budget_minutes: null` silently became the preset's budget."""
    from fmtune import config

    values = tmp_path / "values.yaml"
    values.write_text("experiment:\n  overrides:\n    budget_minutes: null\n    search: {max_trials: 3}\n")
    text = experiment_yaml(objects(render(major, "default", "-f", str(values)).stdout))
    experiment = yaml.safe_load(text)
    assert "budget_minutes" in experiment and experiment["budget_minutes"] is None
    assert (experiment["workdir"], experiment["model_repo"]) == ("/data/runs", "/data/models")  # still the chart's
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    cfg = config.load("quick", path, environ={})  # what the pods run: --preset quick --config ...
    assert cfg.budget_minutes is None and cfg.search.max_trials == 3
    assert config.load("quick", None, environ={}).budget_minutes is not None  # the preset has one


@pytest.mark.parametrize("major", [3, 4])
def test_an_upgrade_raising_max_trials_can_lift_the_presets_budget(major: int, tmp_path: Path) -> None:
    """A preset's budget counts from the experiment's first start: after a finished search, more
    trials run only without it. `helm upgrade --set-json` with a null must reach the pods."""
    from fmtune import config

    upgrade = (
        "--set-json",
        "experiment.overrides.budget_minutes=null",
        "--set",
        "experiment.overrides.search.max_trials=20",
    )
    path = tmp_path / "experiment.yaml"
    path.write_text(experiment_yaml(objects(render(major, "default", *upgrade).stdout)))
    cfg = config.load("quick", path, environ={})
    assert (cfg.budget_minutes, cfg.search.max_trials) == (None, 20)


def test_the_deploy_window_is_a_setting(tmp_path: Path) -> None:
    """The first deploy may wait for a pull of tensorflow/serving and a node scale-up."""
    from fmtune.deploy import DeployConfig

    docs = objects(render(4, "default", "--set", "coordinator.deployTimeoutSeconds=1800").stdout)
    path = tmp_path / "deploy.yaml"
    path.write_text(named(docs, "ConfigMap", "fmtune-config")["data"]["deploy.yaml"])
    assert DeployConfig.load(path).timeout_seconds == 1800


def serving_args(*extra: str) -> list[str]:
    docs = objects(render(4, "default", *extra).stdout)
    (container,) = named(docs, "Deployment", "fmtune-serving")["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


@pytest.mark.parametrize(
    ("settings", "threads"),
    [
        ([], 2),  # the default CPU limit
        (["--set-string", "serving.resources.limits.cpu=1500m"], 2),
        (["--set", "serving.resources.limits.cpu=3"], 3),
        (["--set-string", "serving.resources.limits.cpu=500m"], 1),
        (["--set", "serving.threads=6"], 6),
    ],
)
def test_tf_serving_threads_follow_the_pods_cpu_limit(settings: list[str], threads: int) -> None:
    """TF Serving sizes its pools by the node's cores: on a 64-core node a 2-CPU pod is throttled."""
    args = serving_args(*settings)
    for flag in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism", "rest_api_num_threads"):
        assert f"--{flag}={threads}" in args, (flag, args)


@pytest.mark.parametrize(
    ("settings", "threads"),
    [
        ([], "2"),  # the workers' default CPU limit
        (["--set-string", "workers.resources.limits.cpu=1500m"], "2"),
        (["--set", "workers.threads=4"], "4"),
        (["--set", "workers.resources.limits.cpu=null"], "0"),  # no CPU limit: unknown
    ],
)
def test_the_coordinator_knows_the_threads_a_trial_ran_on(settings: list[str], threads: str) -> None:
    """It predicts a retraining epoch on its own CPUs from trial epochs on a worker's."""
    docs = objects(render(4, "default", *settings).stdout)
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].startswith("fmtune-coordinator"))
    (container,) = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "coordinator"]
    args = container["args"]
    assert args[args.index("--trial-threads") + 1] == threads


@pytest.mark.parametrize("values", list(VALUES))
def test_every_image_is_fully_qualified(values: str) -> None:
    """A short name is refused by CRI-O and read as docker.io/library/... elsewhere."""
    docs = objects(render(4, values, "--set", "tensorboard.enabled=true").stdout)
    images = [
        container["image"]
        for doc in docs
        if doc["kind"] in ("Job", "Deployment", "Pod")
        for container in (doc["spec"]["template"]["spec"] if doc["kind"] != "Pod" else doc["spec"])["containers"]
    ]
    assert len(images) >= 4
    for image in images:
        registry = image.split("/", 1)[0]
        assert "/" in image and (registry == "localhost" or "." in registry or ":" in registry), image


def workers_node_selector(values: str, *extra: str) -> dict:
    docs = objects(render(4, values, *extra).stdout)
    (workers,) = [d for d in docs if d["kind"] == "Job" and "workers" in d["metadata"]["name"]]
    return dict(workers["spec"]["template"]["spec"].get("nodeSelector", {}))


def test_gke_gpu_workers_name_their_accelerator() -> None:
    """Autopilot and node auto-provisioning make GPU nodes only for pods that name the type."""
    assert workers_node_selector("gke-gpu") == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert workers_node_selector("gpu") == {}  # any cluster with NVIDIA's device plugin
    # CPU workers never ask for a GPU node, whatever the setting.
    assert workers_node_selector("default", "--set", "workers.gkeAccelerator=nvidia-l4") == {}


@pytest.mark.parametrize("major", [3, 4])
def test_helm_test_is_rendered_only_with_serving(major: int) -> None:
    """Its pod predicts through the serving Service: without serving it can only fail."""

    def test_pods(*extra: str) -> list[dict]:
        docs = objects(render(major, "default", *extra).stdout)
        return [d for d in docs if d.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test"]

    assert len(test_pods()) == 1
    assert test_pods("--set", "serving.enabled=false") == []


NOBODY = 65534


@pytest.fixture
def volume() -> Iterator[Path]:
    """An empty directory the user ``nobody`` can reach (pytest's own tmp dirs are private)."""
    path = Path(tempfile.mkdtemp(prefix="fmtune-volume-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def run_volume_check(volume: Path) -> subprocess.CompletedProcess[str]:
    """The coordinator's volume-check init container, run as a user that is not root (as in the
    pod: root may write anything)."""
    docs = objects(render().stdout)
    (coordinator,) = [d for d in docs if d["kind"] == "Job" and "coordinator" in d["metadata"]["name"]]
    (check,) = coordinator["spec"]["template"]["spec"]["initContainers"]
    assert check["volumeMounts"] == [{"name": "data", "mountPath": "/volume"}]  # the claim's root, no subPath
    command = [part.replace("/volume", str(volume)) for part in check["command"]]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot run the check as another user")
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_the_coordinator_makes_both_trees_on_a_volume_it_owns(volume: Path) -> None:
    if os.geteuid() == 0:
        os.chown(volume, NOBODY, NOBODY)
    done = run_volume_check(volume)
    assert done.returncode == 0, done.stderr
    assert (volume / "runs").is_dir() and (volume / "models").is_dir()


def test_a_volume_root_the_pods_cannot_write_is_a_clear_error_before_the_search(volume: Path) -> None:
    """GKE Filestore's CSI driver may not apply fsGroup: the share's root stays root's, and uid
    10001 could not make runs/ (or, after hours of search, write models/)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory another user cannot write")
    done = run_volume_check(volume)
    assert done.returncode != 0
    assert "runs/ on the volume fmtune-data cannot be made or written by uid 65534" in done.stderr
    assert "fsGroup" in done.stderr
    (volume / "runs").mkdir()
    os.chown(volume / "runs", NOBODY, NOBODY)  # one tree given to the pods' user, the other not
    done = run_volume_check(volume)
    assert done.returncode != 0 and "models/ on the volume" in done.stderr
