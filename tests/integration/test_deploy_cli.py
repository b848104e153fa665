"""`fmtune deploy` as a user runs it: the real command in a subprocess, against a loopback stand-in
of the Kubernetes API and the built-in server as the one serving pod."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fmtune import export

from .. import _kube_standin as kube
from .._builtin_server import builtin_server, export_version, tiny_model
from .helpers import free_ports, run

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_version(tiny_model(seed=3), tmp_path_factory.mktemp("exported"), accuracy=0.9)


def deploy(
    tmp_path: Path,
    version_dir: Path,
    kubeconfig: Path,
    grpc_port: int = 8500,
    config: Path | None = None,
    repo: Path | None = None,
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr with its line wrapping undone) of `fmtune deploy`."""
    config = config or kube.deploy_yaml(tmp_path / "deploy.yaml", grpc_port, poll_seconds=0.1, timeout_seconds=120)
    argv = [sys.executable, "-m", "fmtune", "deploy", str(version_dir), "--deploy-config", str(config)]
    argv += ["--model-repo", str(repo or tmp_path / "models")]
    environ = {"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
    done = run(argv, tmp_path, timeout=240, extra_env=environ)
    return done.returncode, done.stdout, " ".join(done.stderr.split())


def test_deploy_publishes_verifies_on_the_pod_and_records(tmp_path: Path, exported: Path) -> None:
    repo = tmp_path / "models"
    with builtin_server(repo) as server, kube.running(kube.KubeStandIn()) as api:
        api.pods = [kube.pod("serving-0", "127.0.0.1")]
        code, out, err = deploy(tmp_path, exported, kube.kubeconfig(tmp_path / "kubeconfig", api.url), server.grpc_port)
        assert code == 0, out[-3000:] + err[-3000:]
        assert server.states() == {1: "AVAILABLE"}
    record = json.loads(out[out.index("\n{\n") :])
    assert (record["version"], record["previous_version"], record["pods"]) == (1, None, 1)
    assert (record["test_accuracy"], record["experiment"]) == (0.9, "test")
    assert export.read_card(repo / "fmtune" / "1").version == 1
    assert [p.name for p in (repo / "fmtune").iterdir() if p.name.startswith(".staging")] == []
    assert json.loads(api.configmap["v1"])["version"] == 1 and json.loads(api.configmap["current"])["version"] == 1
    assert [(e["reason"], e["type"]) for e in api.events] == [("ModelDeployed", "Normal")]


def test_an_unreachable_cluster_is_a_clear_error_and_nothing_stays_published(tmp_path: Path, exported: Path) -> None:
    (port,) = free_ports(1)
    code, out, err = deploy(tmp_path, exported, kube.kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}"))
    assert code == 1, out[-3000:] + err[-3000:]
    # The serving replicas are read before anything is published: nothing to roll back, nothing staged.
    assert f"error: cannot reach the Kubernetes API at http://127.0.0.1:{port} to read the scale" in err
    assert "Traceback" not in out + err
    assert export.versions(tmp_path / "models" / "fmtune") == []
    assert not list((tmp_path / "models" / "fmtune").glob(".staging*"))


def test_without_a_kubeconfig_it_stops_before_writing_anything(tmp_path: Path, exported: Path) -> None:
    code, out, err = deploy(tmp_path, exported, tmp_path / "no-such-kubeconfig")
    assert code == 1, out[-3000:] + err[-3000:]
    assert "error: no Kubernetes configuration: not in a pod, and no usable kubeconfig" in err
    assert "Traceback" not in out + err
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("namespace: [serving", "not valid YAML (while parsing a flow sequence"),
        ("namespace: serving\n", "deployment: Field required; record_configmap: Field required"),
        ("- a list", "the top level: Input should be a valid dictionary"),
    ],
)
def test_a_bad_deploy_config_is_named_and_nothing_is_written(
    tmp_path: Path, exported: Path, text: str, problem: str
) -> None:
    config = tmp_path / "deploy.yaml"
    config.write_text(text)
    code, out, err = deploy(tmp_path, exported, tmp_path / "no-such-kubeconfig", config=config)
    assert code == 1, out[-3000:] + err[-3000:]
    assert f"error: deploy config {config}: {problem}" in err
    assert "Traceback" not in out + err
    assert not (tmp_path / "models").exists()


def test_a_model_repository_that_cannot_be_written_is_a_clear_error(tmp_path: Path, exported: Path) -> None:
    repo = tmp_path / "models"
    repo.write_text("a file where the repository should be")
    with kube.running(kube.KubeStandIn()) as api:
        api.pods = [kube.pod("serving-0", "127.0.0.1")]
        code, out, err = deploy(tmp_path, exported, kube.kubeconfig(tmp_path / "kubeconfig", api.url), repo=repo)
    assert code == 1, out[-3000:] + err[-3000:]
    assert f"error: model repository {repo}: Not a directory" in err
    assert "Traceback" not in out + err
    assert repo.read_text() == "a file where the repository should be"
