"""The chart's dashboard: on the coordinator's Service, listening on the pod's loopback (only
`kubectl port-forward` reaches it) unless values open it to peers the NetworkPolicy names."""

from __future__ import annotations

import subprocess

import pytest

from .test_chart import by_kind, job, notes
from .tools import CHART, KUBERNETES_VERSIONS, helm, objects, render, validator

pytestmark = pytest.mark.timeout(300)
OFF = ("--set", "dashboard.enabled=false")
PEERS = ("--set", "dashboard.allowFrom[0].namespaceSelector.matchLabels.team=ml")
OPEN = (*PEERS, "--set", "dashboard.host=0.0.0.0")


def coordinator_container(docs: list[dict]) -> dict:
    return job(docs, "coordinator")["spec"]["template"]["spec"]["containers"][0]


def oracle_service(docs: list[dict]) -> dict:
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "fmtune-oracle"]
    return service


@pytest.mark.parametrize("settings", [(), OFF, OPEN])
@pytest.mark.parametrize("major", [3, 4])
def test_lint_strict_with_the_dashboard_on_and_off(major: int, settings: tuple[str, ...]) -> None:
    done = subprocess.run([helm(major), "lint", "--strict", str(CHART), *settings], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("settings", [OFF, OPEN])
def test_strict_schema_validation_with_the_dashboard_off_and_open(settings: tuple[str, ...], version: str) -> None:
    manifest = render(4, "default", *settings).stdout
    done = subprocess.run(
        [*validator(), "--strict", "--quiet", "-k", version, "-"], input=manifest, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_port_is_on_the_service_and_closed_to_the_network_by_default() -> None:
    docs = objects(render().stdout)
    service = oracle_service(docs)
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"oracle": 8000, "dashboard": 8080}
    container = coordinator_container(docs)
    env = {e["name"]: e.get("value") for e in container["env"]}
    # loopback: closed to the pod network even where the CNI does not enforce the NetworkPolicy
    assert env["FMTUNE_DASHBOARD_PORT"] == "8080" and env["FMTUNE_DASHBOARD_HOST"] == "127.0.0.1"
    assert {"name": "dashboard", "containerPort": 8080} in container["ports"]
    (policy,) = by_kind(docs, "NetworkPolicy")
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == [8000]  # nobody reaches the dashboard over the network


def test_the_network_policy_admits_the_dashboard_only_from_the_peers_values_name() -> None:
    docs = objects(render(4, "default", *OPEN).stdout)
    env = {e["name"]: e.get("value") for e in coordinator_container(docs)["env"]}
    assert env["FMTUNE_DASHBOARD_HOST"] == "0.0.0.0"
    (policy,) = by_kind(docs, "NetworkPolicy")
    rules = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert rules[8080] == [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}]
    assert rules[8000][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"


def test_the_dashboard_off_leaves_no_port_and_tells_the_coordinator() -> None:
    docs = objects(render(4, "default", *OFF, *OPEN).stdout)
    assert [p["name"] for p in oracle_service(docs)["spec"]["ports"]] == ["oracle"]
    container = coordinator_container(docs)
    assert {e["name"]: e.get("value") for e in container["env"]}["FMTUNE_DASHBOARD_PORT"] == "off"
    assert [p["name"] for p in container["ports"]] == ["oracle"]
    (policy,) = by_kind(docs, "NetworkPolicy")
    assert len(policy["spec"]["ingress"]) == 1


def test_the_notes_give_the_port_forward_line() -> None:
    line = "kubectl port-forward -n default svc/fmtune-oracle 8080:8080"
    assert line in notes() and "http://127.0.0.1:8080/" in notes()
    assert "port-forward -n default svc/fmtune-oracle" not in notes(*OFF)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "dashboard.port=0"), "port"),
        (("--set", "dashboard.allowFrom[0].bogus=1"), "bogus"),
        (("--set", "dashboard.host=0.0.0.0:8080"), "dashboard"),
        (("--set", "dashboard.host=my-host"), "dashboard"),
        # peers admitted to a dashboard that listens on loopback would never reach it
        (PEERS, "set dashboard.host=0.0.0.0"),
    ],
)
def test_the_schema_refuses_bad_dashboard_values(args: tuple[str, ...], message: str) -> None:
    done = render(4, "default", *args, check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_the_coordinator_reads_the_port_the_chart_gives() -> None:
    from fmtune.dashboard.placement import resolve

    env = {e["name"]: e.get("value") for e in coordinator_container(objects(render().stdout))["env"]}
    assert resolve(environ=env) == resolve(
        environ={"FMTUNE_DASHBOARD_HOST": "127.0.0.1", "FMTUNE_DASHBOARD_PORT": "8080"}
    )
    assert resolve(environ=env).port == 8080
    opened = {
        e["name"]: e.get("value") for e in coordinator_container(objects(render(4, "default", *OPEN).stdout))["env"]
    }
    assert resolve(environ=opened).host == "0.0.0.0"
    off = {e["name"]: e.get("value") for e in coordinator_container(objects(render(4, "default", *OFF).stdout))["env"]}
    assert resolve(environ=off).enabled is False
