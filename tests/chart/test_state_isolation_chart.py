"""The coordinator's own state in the chart: kept on the volume apart from the tree workers write,
so that a worker (where a user's code runs) can neither plant a file the coordinator loads nor a
symlink it writes through."""

from __future__ import annotations

from typing import Any

import pytest

from .tools import objects, render

pytestmark = pytest.mark.timeout(300)
STATE = "/data/state"


def container_of(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (job,) = [d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].split("-")[-2] == component]
    return job["spec"]["template"]["spec"]["containers"][0]


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container["env"]}


@pytest.mark.parametrize("values", ["large", "default"])
def test_workers_cannot_write_where_the_coordinator_keeps_its_state(values: str) -> None:
    docs = objects(render(4, values).stdout)
    coordinator, worker = container_of(docs, "coordinator"), container_of(docs, "workers")
    assert env(coordinator)["FMTUNE_STATE_DIR"] == env(worker)["FMTUNE_STATE_DIR"] == STATE
    (own,) = [m for m in coordinator["volumeMounts"] if m["mountPath"] == STATE]
    assert own["subPath"] == "state" and not own.get("readOnly")
    # Every mount of the same volume in a worker: the state's subPath read-only, and no writable
    # mount reaches it (the whole volume, or a subPath holding it).
    claims = {m["name"] for m in worker["volumeMounts"] if m["name"] == own["name"]}
    for mount in (m for m in worker["volumeMounts"] if m["name"] in claims):
        sub = mount.get("subPath", "")
        if mount.get("readOnly"):
            continue
        assert sub and sub != "state" and not "state".startswith(sub.rstrip("/") + "/"), mount
    (theirs,) = [m for m in worker["volumeMounts"] if m["mountPath"] == STATE]
    assert theirs == {**own, "readOnly": True}
    # The coordinator makes the state's directory on the volume before it starts.
    (check,) = [
        c
        for d in docs
        if d["kind"] == "Job" and "coordinator" in d["metadata"]["name"]
        for c in d["spec"]["template"]["spec"]["initContainers"]
    ]
    assert "state" in check["command"][-1].split(";")[0].split()
