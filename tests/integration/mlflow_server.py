"""A real MLflow tracking server on loopback (SQLite store), and its REST API as the tests read it."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from .helpers import free_ports, ready_process

START_SECONDS = 180.0  # its database migrations take a while on a busy machine


@contextmanager
def mlflow_server(directory: Path) -> Iterator[str]:
    """``mlflow server`` with its store in ``directory``; yields its URI."""
    if importlib.util.find_spec("mlflow") is None:
        raise AssertionError("MLflow is not installed (the dev extra installs it: make install)")
    (port,) = free_ports(1)
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    argv += ["--backend-store-uri", f"sqlite:///{directory / 'mlflow.db'}"]
    argv += ["--default-artifact-root", str(directory / "artifacts")]
    uri = f"http://127.0.0.1:{port}"
    with ready_process(argv, directory / "mlflow-server.log", f"{uri}/health", START_SECONDS, cwd=directory):
        yield uri


def runs(uri: str, experiment: str) -> list[dict[str, Any]]:
    """Every run of an MLflow experiment, through the server's REST API."""
    got = httpx.get(f"{uri}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment})
    got.raise_for_status()
    experiment_id = got.json()["experiment"]["experiment_id"]
    found = httpx.post(
        f"{uri}/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment_id], "max_results": 1000}
    )
    found.raise_for_status()
    return list(found.json().get("runs", []))


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """A metric's points (step, value) as the server keeps them."""
    got = httpx.get(f"{uri}/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": key})
    got.raise_for_status()
    return sorted((int(m.get("step", 0)), float(m["value"])) for m in got.json().get("metrics", []))


def fields(run: dict[str, Any], part: str) -> dict[str, Any]:
    """A run's params, tags or (latest) metrics as a mapping."""
    return {item["key"]: item["value"] for item in run["data"].get(part, [])}
