"""On Kubernetes each worker pod holds its own credential and never the oracle's secret: the
secret lives under secrets/ on the volume, which only the coordinator and the workers' init
container (read-only) mount; the init container runs the image's own command to make the one
credential the worker's container gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fmtune.tuning import auth

from .tools import objects, render

pytestmark = pytest.mark.timeout(300)

SEES_SECRETS = {("coordinator", "volume-check"), ("coordinator", "coordinator"), ("workers", "credential")}


def pods(values: str = "default") -> dict[str, dict]:
    """Pod specs by component name (coordinator, workers, serving...)."""
    found = {}
    for doc in objects(render(4, values).stdout):
        if doc["kind"] in ("Job", "Deployment"):
            name = doc["metadata"]["name"].removeprefix("fmtune-").removeprefix("fmtune")
            found[name.rsplit("-r", 1)[0].strip("-") or "fmtune"] = doc["spec"]["template"]["spec"]
    return found


def sees_secrets(mount: dict) -> bool:
    """Whether a mount of the volume shows its secrets/ (all of the volume, or secrets/ itself)."""
    return mount.get("subPath", "").strip("/").split("/")[0] in ("", "secrets")


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


@pytest.mark.parametrize("values", ["default", "large"])
def test_only_the_coordinator_and_the_workers_init_container_can_read_the_secret(values: str) -> None:
    for pod, spec in pods(values).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] != "data" or not sees_secrets(mount):
                    continue
                assert (pod, container["name"]) in SEES_SECRETS, (pod, container["name"], mount)
            assert not auth.SECRET_VARS & set(env(container)) or (pod, container["name"]) in {
                ("coordinator", "coordinator"),
                ("workers", "worker"),
            }


def test_the_worker_container_gets_its_credential_and_never_the_secret() -> None:
    spec = pods()["workers"]
    (init,) = spec["initContainers"]
    (worker,) = spec["containers"]
    assert env(worker)[auth.CREDENTIAL_FILE_ENV] == "/run/fmtune/credential"
    assert not {auth.TOKEN_ENV, auth.TOKEN_FILE_ENV, auth.CREDENTIAL_ENV} & set(env(worker))
    data = [m for m in worker["volumeMounts"] if m["name"] == "data"]
    assert "runs" in [m["subPath"] for m in data] and not [m for m in data if sees_secrets(m)]
    (credential,) = [m for m in worker["volumeMounts"] if m["name"] == "credential"]
    assert credential["readOnly"] is True and credential["mountPath"] == "/run/fmtune"
    (volume,) = [v for v in spec["volumes"] if v["name"] == "credential"]
    assert volume["emptyDir"]["medium"] == "Memory"
    assert [m for m in init["volumeMounts"] if m["name"] == "data"] == [
        {"name": "data", "mountPath": "/volume", "readOnly": True}
    ]


def test_the_init_container_reads_the_file_the_coordinator_writes_and_makes_the_workers_credential(
    tmp_path: Path,
) -> None:
    """Run the rendered init command, with the volume's root at ``tmp_path``."""
    specs = pods()
    (coordinator,) = specs["coordinator"]["containers"]
    (init,) = specs["workers"]["initContainers"]
    secrets_mount = next(m for m in coordinator["volumeMounts"] if m.get("subPath") == "secrets")
    token_file = env(coordinator)[auth.TOKEN_FILE_ENV]
    assert token_file.startswith(secrets_mount["mountPath"] + "/")
    on_volume = tmp_path / "secrets" / token_file.removeprefix(secrets_mount["mountPath"] + "/")
    secret = auth.coordinator_token(tmp_path / "runs" / "quick", environ={auth.TOKEN_FILE_ENV: str(on_volume)})
    assert init["command"] == ["python", "-m", "fmtune.tuning.auth"]
    args = [
        a.replace("/volume", str(tmp_path)).replace("$(JOB_INDEX)", "3").replace("/run/fmtune", str(tmp_path / "run"))
        for a in init["args"]
    ]
    assert args[0] == str(on_volume)
    subprocess.run([sys.executable, "-m", "fmtune.tuning.auth", *args], check=True, timeout=60)
    assert (tmp_path / "run" / "credential").read_text() == auth.worker_credential(secret, "tuner3")
    assert "secrets" in specs["coordinator"]["initContainers"][0]["command"][-1]  # made by the pods' user
