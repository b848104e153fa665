"""The deployer's gate, verification and rollback, against a fake cluster (no Kubernetes needed):
verified by the real gRPC check against the built-in server where that is cheap, and by a scripted
check where the test is about timing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fmtune import export
from fmtune.deploy import Cluster, DeployConfig, Deployer, DeployError, GateRefused, GrpcServingCheck, ServingCheck
from fmtune.export import ModelCard

from .._builtin_server import Loopback, builtin_server, export_version, mixed_images, probabilities, tiny_model

IMAGES = np.zeros((4, 28, 28), np.uint8)
EXPECTED = np.eye(10, dtype=np.float32)[[1, 2, 3, 4]]


class FakeCluster(Cluster):
    def __init__(self, replicas: int = 1, pods: int = 1):
        self._replicas, self.pods = replicas, pods
        self.records: dict[str, str] = {}
        self.events: list[tuple[str, str, bool]] = []

    def replicas(self) -> int:
        return self._replicas

    def serving_addresses(self) -> list[str]:
        return [f"10.0.0.{i}:8500" for i in range(self.pods)]

    def write_record(self, key: str, value: str) -> None:
        self.records[key] = value

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((reason, message, warning))


class FakeCheck(ServingCheck):
    """Every pod turns AVAILABLE after ``loading_polls`` polls and predicts what is expected."""

    def __init__(self, loading_polls: int = 0):
        self.loading_polls, self.polls = loading_polls, 0

    def state(self, address: str, version: int) -> str:
        self.polls += 1
        return "AVAILABLE" if self.polls > self.loading_polls else "LOADING"

    def predict(self, address: str, version: int, images: np.ndarray) -> np.ndarray:
        return EXPECTED


CFG = DeployConfig(
    namespace="ns",
    deployment="fmtune-serving",
    record_configmap="rec",
    component_selector="app=x",
    gate_tolerance=0.01,
    timeout_seconds=30,
    poll_seconds=1,
)


def card(accuracy: float) -> ModelCard:
    return ModelCard(
        model_name="fmtune",
        dataset="fashion_mnist",
        class_names=[str(i) for i in range(10)],
        input_shape=[28, 28],
        family="mlp",
        hyperparameters={"units_0": 64},
        test_metrics={"accuracy": accuracy},
        config_digest="d",
        experiment="e",
    )


def staged(repo: Path) -> Path:
    """A staged export (the deployer only moves directories, so a stand-in SavedModel will do)."""
    model_dir = repo / "fmtune"
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".staging-{len(list(model_dir.iterdir()))}"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(b"stand-in")
    return staging


def deployer(cluster: Cluster, check: ServingCheck) -> Deployer:
    clock = iter(range(0, 10_000, 1))
    return Deployer(CFG, cluster, check, sleep=lambda _: None, clock=lambda: float(next(clock)))


def served_version(repo: Path) -> int:
    return export.versions(repo / "fmtune")[-1]


class LoopbackCluster(FakeCluster):
    """Every serving pod is the one built-in server on loopback."""

    def __init__(self, address: str, pods: int = 1):
        super().__init__(replicas=pods, pods=pods)
        self.address = address

    def serving_addresses(self) -> list[str]:
        return [self.address] * self.pods


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two exported versions of differently initialised models: they predict differently."""
    source = tmp_path_factory.mktemp("exports")
    return export_version(tiny_model(seed=1), source), export_version(tiny_model(seed=2), source)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Loopback]:
    with builtin_server(tmp_path) as server:
        yield server


class CountedSleep:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        time.sleep(seconds)


def real_deployer(cluster: Cluster, sleep: CountedSleep | None = None) -> Deployer:
    cfg = CFG.model_copy(update={"poll_seconds": 0.05, "timeout_seconds": 60})
    return Deployer(cfg, cluster, GrpcServingCheck("fmtune"), sleep=sleep or CountedSleep())


def test_first_model_deploys_and_is_recorded(served: Loopback, exports: tuple[Path, Path]) -> None:
    cluster, sleep, images = LoopbackCluster(served.grpc_target, pods=2), CountedSleep(), mixed_images()
    model = exports[0]
    staging = export.stage_copy(model, served.repo, "fmtune")
    record = real_deployer(cluster, sleep).deploy(staging, card(0.90), images, probabilities(model, images))
    assert record.version == 1 and record.previous_version is None and record.pods == 2
    assert served_version(served.repo) == 1 and served.states() == {1: "AVAILABLE"}
    assert '"version":1' in cluster.records["v1"] and '"version": 1' in cluster.records["current"]
    assert cluster.events[-1][0] == "ModelDeployed" and not cluster.events[-1][2]
    assert sleep.calls > 0  # it waited for the server to load the new version


def test_gate_refuses_a_worse_model_unless_forced(tmp_path: Path) -> None:
    cluster = FakeCluster()
    deployer(cluster, FakeCheck()).deploy(staged(tmp_path), card(0.90), IMAGES, EXPECTED)
    worse = staged(tmp_path)
    with pytest.raises(GateRefused, match=r"0\.8800 is worse than version 1's 0\.9000"):
        deployer(cluster, FakeCheck()).deploy(worse, card(0.88), IMAGES, EXPECTED)
    assert not worse.exists() and served_version(tmp_path) == 1
    assert cluster.events[-1][0] == "DeploymentRefused" and cluster.events[-1][2]
    # Within the tolerance it goes through; forced, so does a worse one.
    assert deployer(cluster, FakeCheck()).deploy(staged(tmp_path), card(0.895), IMAGES, EXPECTED).version == 2
    assert deployer(cluster, FakeCheck()).deploy(staged(tmp_path), card(0.5), IMAGES, EXPECTED, force=True).version == 3


def test_serving_scaled_to_zero_is_refused_before_anything_is_published(tmp_path: Path) -> None:
    """The replicas are the chart's: the deployer does not scale (Cluster has no way to), so an
    operator's zero is a clear error, and the staged version never becomes visible."""
    cluster = FakeCluster(replicas=0, pods=0)
    staging = staged(tmp_path)
    with pytest.raises(DeployError, match=r"fmtune-serving is scaled to 0: .*serving\.replicas"):
        deployer(cluster, FakeCheck()).deploy(staging, card(0.9), IMAGES, EXPECTED)
    assert not staging.exists() and export.versions(tmp_path / "fmtune") == []
    assert cluster.events[-1][0] == "DeploymentRefused" and cluster.events[-1][2]
    assert not hasattr(Cluster, "scale")


def test_every_replica_the_chart_asked_for_must_load_the_version(tmp_path: Path) -> None:
    record = deployer(FakeCluster(replicas=3, pods=3), FakeCheck()).deploy(
        staged(tmp_path), card(0.9), IMAGES, EXPECTED
    )
    assert record.pods == 3


def test_wrong_predictions_roll_back_to_the_previous_version(served: Loopback, exports: tuple[Path, Path]) -> None:
    cluster, images = LoopbackCluster(served.grpc_target), mixed_images()
    first, other = exports
    expected = probabilities(first, images)
    real_deployer(cluster).deploy(export.stage_copy(first, served.repo, "fmtune"), card(0.90), images, expected)
    # The pod answers with the other model's outputs, not those the deployer expects.
    with pytest.raises(DeployError, match=rf"version 2 rolled back: smoke test failed on {served.grpc_target}"):
        real_deployer(cluster).deploy(export.stage_copy(other, served.repo, "fmtune"), card(0.91), images, expected)
    assert served_version(served.repo) == 1 and not (served.repo / "fmtune" / "2").exists()
    assert [p.name for p in (served.repo / "fmtune").iterdir() if p.name.startswith(".rejected-2-")]
    assert cluster.events[-1][0] == "DeploymentFailed" and "v2" not in cluster.records
    assert served.wait_for(1) == {1: "AVAILABLE", 2: "END"}  # the server went back to version 1
    # The next export does not reuse the rejected number.
    staging = export.stage_copy(first, served.repo, "fmtune")
    assert real_deployer(cluster).deploy(staging, card(0.91), images, expected).version == 3


def test_never_available_times_out_and_rolls_back(tmp_path: Path) -> None:
    cluster = FakeCluster(pods=2, replicas=2)
    with pytest.raises(DeployError, match="not AVAILABLE on every serving pod after 30s"):
        deployer(cluster, FakeCheck(loading_polls=10**9)).deploy(staged(tmp_path), card(0.9), IMAGES, EXPECTED)
    assert export.versions(tmp_path / "fmtune") == []


def test_too_few_pods_is_not_done(tmp_path: Path) -> None:
    cluster = FakeCluster(replicas=3, pods=2)
    with pytest.raises(DeployError, match="wanted 3 pods"):
        deployer(cluster, FakeCheck()).deploy(staged(tmp_path), card(0.9), IMAGES, EXPECTED)


def test_deploy_config_reads_the_charts_file(tmp_path: Path) -> None:
    from .._chart_render import chart_deploy_yaml

    path = tmp_path / "deploy.yaml"
    path.write_text(chart_deploy_yaml())
    cfg = DeployConfig.load(path)
    assert (cfg.deployment, cfg.record_configmap, cfg.grpc_port) == ("fmtune-serving", "fmtune-deployments", 8500)
    assert cfg.timeout_seconds == 600  # the chart's coordinator.deployTimeoutSeconds
