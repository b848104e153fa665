"""The deployer's real adapters: ``KubernetesCluster`` with the real kubernetes client against a
loopback stand-in of the API, and ``GrpcServingCheck`` against the built-in server."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from fmtune import data, export
from fmtune.client import ModelNotFoundError
from fmtune.data import registry
from fmtune.deploy import (
    SMOKE_IMAGES,
    ClusterError,
    DeployConfig,
    Deployer,
    DeployError,
    GrpcServingCheck,
    KubernetesCluster,
    deploy_version,
)
from fmtune.redeploy import deploy_exported, smoke_images

from .. import _kube_standin as kube
from .._builtin_server import Loopback, builtin_server, export_version, mixed_images, probabilities, tiny_model
from ..conftest import SYNTHETIC
from ..integration.helpers import free_ports, tiny_card

SCALE = f"/apis/apps/v1/namespaces/{kube.NAMESPACE}/deployments/{kube.DEPLOYMENT}/scale"
PODS = f"/api/v1/namespaces/{kube.NAMESPACE}/pods"
CONFIGMAP = f"/api/v1/namespaces/{kube.NAMESPACE}/configmaps/{kube.CONFIGMAP}"
EVENTS = f"/api/v1/namespaces/{kube.NAMESPACE}/events"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"


def deploy_config(grpc_port: int = 8500, **overrides: object) -> DeployConfig:
    fields = {
        "namespace": kube.NAMESPACE,
        "deployment": kube.DEPLOYMENT,
        "record_configmap": kube.CONFIGMAP,
        "component_selector": kube.SELECTOR,
        "grpc_port": grpc_port,
        **overrides,
    }
    return DeployConfig.model_validate(fields)


def use_kubeconfig(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Outside a pod, pointed at ``path`` (the client reads $KUBECONFIG once, at import)."""
    from kubernetes.config import kube_config

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[kube.KubeStandIn]:
    with kube.running(kube.KubeStandIn()) as running:
        use_kubeconfig(monkeypatch, kube.kubeconfig(tmp_path / "kubeconfig", running.url))
        yield running


def test_replicas_reads_the_scale_subresource_with_the_kubeconfigs_token(api: kube.KubeStandIn) -> None:
    api.replicas = 3
    assert KubernetesCluster(deploy_config()).replicas() == 3
    (request,) = api.requests
    assert (request.method, request.path) == ("GET", SCALE)
    assert request.headers["authorization"] == f"Bearer {kube.TOKEN}"


def test_the_deployer_never_writes_the_serving_replicas(api: kube.KubeStandIn, tmp_path: Path, exported: Path) -> None:
    """spec.replicas is the chart's alone: a second writer makes Helm 4's server-side apply refuse
    the next upgrade that changes serving.replicas. Serving at zero is a clear error, and nothing
    is published."""
    api.replicas = 0
    repo = tmp_path / "repo"
    staging = export.stage_copy(exported, repo, "fmtune")
    cfg = deploy_config(timeout_seconds=2, poll_seconds=0.05)
    deployer = Deployer(cfg, KubernetesCluster(cfg), GrpcServingCheck("fmtune"))
    with pytest.raises(DeployError, match=rf"{kube.NAMESPACE}/{kube.DEPLOYMENT} is scaled to 0"):
        deployer.deploy(staging, export.read_card(exported), *smoke(1))
    assert api.calls() == [("GET", SCALE), ("POST", EVENTS)] and api.replicas == 0
    assert api.events[-1]["reason"] == "DeploymentRefused"
    assert export.versions(repo / "fmtune") == [] and not staging.exists()


def test_serving_addresses_are_the_running_pods_of_the_selector_not_being_deleted(api: kube.KubeStandIn) -> None:
    api.pods = [
        kube.pod("serving-a", "10.0.0.1"),
        kube.pod("serving-pending", "10.0.0.2", phase="Pending"),
        kube.pod("serving-no-ip", None),
        kube.pod("serving-terminating", "10.0.0.4", deleting=True),
        kube.pod("serving-b", "10.0.0.5"),
    ]
    addresses = KubernetesCluster(deploy_config(grpc_port=8600)).serving_addresses()
    assert addresses == ["10.0.0.1:8600", "10.0.0.5:8600"]
    (request,) = api.requests
    assert (request.method, request.path) == ("GET", PODS)
    assert request.query == {"labelSelector": [kube.SELECTOR]}


def test_write_record_patches_one_key_of_the_record_configmap(api: kube.KubeStandIn) -> None:
    cluster = KubernetesCluster(deploy_config())
    cluster.write_record("v3", '{"version": 3}')
    cluster.write_record("current", '{"version": 3, "deployed_at": "2026-01-01"}')
    first, second = api.requests
    assert (first.method, first.path, first.body) == ("PATCH", CONFIGMAP, {"data": {"v3": '{"version": 3}'}})
    assert first.headers["content-type"] == STRATEGIC_MERGE
    assert second.body == {"data": {"current": '{"version": 3, "deployed_at": "2026-01-01"}'}}
    assert sorted(api.configmap) == ["current", "v3"]


def test_an_event_is_posted_about_the_deployment_with_its_message_bounded(api: kube.KubeStandIn) -> None:
    cluster = KubernetesCluster(deploy_config())
    cluster.event("DeploymentFailed", "x" * 1500, warning=True)
    cluster.event("ModelDeployed", "version 4 AVAILABLE")
    (method, path), _ = api.calls()
    assert (method, path) == ("POST", EVENTS)
    warning, normal = api.events
    assert warning["metadata"] == {"generateName": f"{kube.DEPLOYMENT}-"}
    assert warning["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": kube.DEPLOYMENT,
        "namespace": kube.NAMESPACE,
    }
    assert (warning["reason"], warning["type"], len(warning["message"])) == ("DeploymentFailed", "Warning", 1000)
    assert (warning["count"], warning["source"]) == (1, {"component": "fmtune-deployer"})
    assert warning["firstTimestamp"] == warning["lastTimestamp"]
    assert datetime.fromisoformat(warning["firstTimestamp"].replace("Z", "+00:00")).tzinfo is not None
    assert (normal["reason"], normal["type"], normal["message"]) == ("ModelDeployed", "Normal", "version 4 AVAILABLE")


def test_a_refused_call_is_a_cluster_error_with_the_apis_reason(api: kube.KubeStandIn) -> None:
    api.refuse = 403
    with pytest.raises(
        ClusterError, match=r"refused to read the scale of deployment ns/fmtune-serving: 403 .*not allowed"
    ):
        KubernetesCluster(deploy_config()).replicas()


def closed_port() -> int:
    (port,) = free_ports(1)
    return port


def test_an_unreachable_api_is_a_cluster_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    use_kubeconfig(monkeypatch, kube.kubeconfig(tmp_path / "kubeconfig", server))
    cluster = KubernetesCluster(deploy_config())
    started = time.monotonic()
    with pytest.raises(ClusterError, match=f"cannot reach the Kubernetes API at {server} to list the serving pods"):
        cluster.serving_addresses()
    assert time.monotonic() - started < 30


def test_no_configuration_at_all_is_a_cluster_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_kubeconfig(monkeypatch, tmp_path / "no-such-kubeconfig")
    with pytest.raises(ClusterError, match="no Kubernetes configuration"):
        KubernetesCluster(deploy_config())


def test_losing_the_cluster_before_publishing_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving replicas are read before the version is published: nothing is published or left
    staged, and the error says what failed."""
    use_kubeconfig(monkeypatch, kube.kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{closed_port()}"))
    cfg = deploy_config()
    staging = export.stage_copy(stand_in_version(tmp_path), tmp_path / "repo", "fmtune")
    deployer = Deployer(cfg, KubernetesCluster(cfg), GrpcServingCheck("fmtune"), sleep=lambda _: None)
    with pytest.raises(ClusterError, match=r"cannot reach the Kubernetes API .* to read the scale of deployment"):
        deployer.deploy(staging, tiny_card(), np.zeros((1, 28, 28), np.uint8), np.eye(10)[:1])
    assert export.versions(tmp_path / "repo" / "fmtune") == [] and not staging.exists()


def stand_in_version(into: Path) -> Path:
    """An exported version's files, for paths that only move directories."""
    version = into / "export" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"stand-in")
    return version


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_version(tiny_model(seed=1), tmp_path_factory.mktemp("exported"))


@pytest.fixture(scope="module")
def served(exported: Path) -> Iterator[Loopback]:
    with builtin_server(exported.parent.parent) as server:
        server.wait_for(1)
        yield server


def test_state_is_the_servers_state_of_that_version(served: Loopback) -> None:
    check = GrpcServingCheck("fmtune")
    assert check.state(served.grpc_target, 1) == "AVAILABLE"
    assert check.state(served.grpc_target, 7) == ""
    assert GrpcServingCheck("other").state(served.grpc_target, 1) == ""


def test_state_of_an_unreachable_pod_is_unknown_and_quick() -> None:
    started = time.monotonic()
    assert GrpcServingCheck("fmtune", timeout=5).state(f"127.0.0.1:{closed_port()}", 1) == ""
    assert time.monotonic() - started < 5


def test_predict_answers_what_the_model_does_for_any_image(served: Loopback, exported: Path) -> None:
    """The smoke test compares with the model's own outputs, so nothing may be done to the images
    on the way (the SDK would otherwise invert those with a light border)."""
    images = mixed_images()
    got = GrpcServingCheck("fmtune").predict(served.grpc_target, 1, images)
    assert got.shape == (16, 10)
    np.testing.assert_allclose(got, probabilities(exported, images), atol=1e-5)


def test_predict_of_a_version_not_served_is_model_not_found(served: Loopback) -> None:
    with pytest.raises(ModelNotFoundError, match=r"Specific\(fmtune, 9\)"):
        GrpcServingCheck("fmtune").predict(served.grpc_target, 9, mixed_images(2))


def test_a_version_that_failed_to_load_is_end_while_the_previous_serves(tmp_path: Path, exported: Path) -> None:
    repo = tmp_path / "repo"
    export.commit(export.stage_copy(exported, repo, "fmtune"), tiny_card())
    with builtin_server(repo) as server:
        server.wait_for(1)
        broken = repo / "fmtune" / "2"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        assert server.wait_for(2, "END")[1] == "AVAILABLE"
        check = GrpcServingCheck("fmtune")
        assert (check.state(server.grpc_target, 2), check.state(server.grpc_target, 1)) == ("END", "AVAILABLE")


def test_a_real_deploy_through_both_adapters(api: kube.KubeStandIn, tmp_path: Path, exported: Path) -> None:
    """Verified on the serving pod the chart runs, over gRPC, and recorded in the ConfigMap."""
    repo = tmp_path / "repo"
    with builtin_server(repo) as server:
        api.replicas = 1
        api.pods = [kube.pod("serving-0", "127.0.0.1")]
        cfg = deploy_config(grpc_port=server.grpc_port, poll_seconds=0.05, timeout_seconds=60)
        images = mixed_images()
        deployer = Deployer(cfg, KubernetesCluster(cfg), GrpcServingCheck("fmtune"))
        card = export.read_card(exported)
        record = deployer.deploy(
            export.stage_copy(exported, repo, "fmtune"), card, images, probabilities(exported, images)
        )
    assert (record.version, record.previous_version, record.pods) == (1, None, 1)
    assert [c for c in api.calls() if c[0] != "GET" or c[1] != PODS] == [
        ("GET", SCALE),
        ("PATCH", CONFIGMAP),
        ("PATCH", CONFIGMAP),
        ("POST", EVENTS),
    ]
    assert json.loads(api.configmap["v1"])["version"] == 1 and json.loads(api.configmap["current"])["version"] == 1
    assert api.events[-1]["reason"] == "ModelDeployed" and "AVAILABLE on 1 pod(s)" in api.events[-1]["message"]
    assert export.read_card(repo / "fmtune" / "1").version == 1


def test_the_deploy_wiring_reaches_the_cluster_before_staging_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_kubeconfig(monkeypatch, tmp_path / "no-such-kubeconfig")
    staged: list[Path] = []
    with pytest.raises(ClusterError, match="no Kubernetes configuration"):
        deploy_version(deploy_config(), lambda: staged.append(tmp_path) or tmp_path, tiny_card(), *smoke(1))
    assert staged == []


def smoke(count: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((count, 28, 28), np.uint8), np.eye(10)[:count]


def test_smoke_images_are_the_datasets_first_test_images_else_random(
    synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test, _ = data.load_test(SYNTHETIC, synthetic_dir)
    np.testing.assert_array_equal(smoke_images(SYNTHETIC, (28, 28), synthetic_dir), test.images[:SMOKE_IMAGES])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no cached fashion_mnist either
    fashion = registry.DATASETS["fashion_mnist"]  # nor Debian's package, which `make run` installs
    monkeypatch.setitem(registry.DATASETS, "fashion_mnist", dataclasses.replace(fashion, system_dirs=()))
    for dataset, data_dir in ((SYNTHETIC, None), ("fashion_mnist", tmp_path)):
        images = smoke_images(dataset, (28, 28), data_dir)
        assert (images.shape, images.dtype) == ((SMOKE_IMAGES, 28, 28), np.uint8)
        np.testing.assert_array_equal(images, export.default_warmup_images(SMOKE_IMAGES, (28, 28)))
    # Test images here that are not of the model's shape: random ones of its shape instead.
    images = smoke_images(SYNTHETIC, (8, 8, 3), synthetic_dir)
    np.testing.assert_array_equal(images, export.default_warmup_images(SMOKE_IMAGES, (8, 8, 3)))


def test_deploying_an_exported_version_checks_the_pod_with_test_images(
    api: kube.KubeStandIn, tmp_path: Path, exported: Path, synthetic_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What `fmtune deploy` runs: the exported model's card and SavedModel, its dataset's test
    images and the model's own answers for them, through the coordinator's wiring."""
    repo = tmp_path / "repo"
    caplog.set_level("INFO", logger="fmtune")
    with builtin_server(repo) as server:
        api.pods = [kube.pod("serving-0", "127.0.0.1")]
        cfg = deploy_config(grpc_port=server.grpc_port, poll_seconds=0.05, timeout_seconds=60)
        record = deploy_exported(exported, cfg, repo, data_dir=synthetic_dir)
    assert (record.version, record.previous_version, record.pods) == (1, None, 1)
    assert f"smoke test with {SMOKE_IMAGES} test images of {SYNTHETIC}" in caplog.text
    assert export.read_card(repo / "fmtune" / "1").version == 1


def test_an_exported_version_that_is_not_one_is_a_deploy_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="^" + re.escape(f"{tmp_path / 'nothing'}: ")):
        deploy_exported(tmp_path / "nothing", deploy_config(), tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
