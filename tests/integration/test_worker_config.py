"""On Kubernetes every pod resolves its own config: the coordinator publishes its config in the
experiment dir, and a worker whose config differs refuses to run (exit 2), saying why."""

from __future__ import annotations

import sys
from pathlib import Path

from fmtune import config
from fmtune.run import experiment

from .helpers import free_ports, role_env, run


def sets(tmp_path: Path, *assignments: str) -> list[str]:
    return [f"workdir={tmp_path / 'runs'}", "name=pods", "dataset=mnist", "download=false", *assignments]


def argv(command: str, tmp_path: Path, *assignments: str) -> list[str]:
    """`fmtune coordinator` or `fmtune worker` as the chart starts them: a preset and overrides,
    with a data dir where the dataset is not."""
    overrides = [arg for s in sets(tmp_path, *assignments) for arg in ("--set", s)]
    return [sys.executable, "-m", "fmtune", command, "--preset", "quick", *overrides, "--data-dir", str(tmp_path)]


def test_a_worker_whose_config_differs_from_the_coordinators_exits_2_saying_why(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    nothing_here = {"KERAS_HOME": str(tmp_path / "keras")}  # no cached mnist either
    # A coordinator checks its data and model before it publishes anything: its dataset is nowhere here.
    chief = run(argv("coordinator", tmp_path), tmp_path, extra_env={**role_env("chief", port), **nothing_here})
    assert chief.returncode == 2 and "mnist: files not found" in chief.stderr, chief.stdout[-2000:] + chief.stderr
    path = tmp_path / "runs" / "pods" / "config.yaml"
    assert not path.exists()
    # What one with its data publishes (the same call, on the config it resolves).
    experiment.publish(config.load("quick", None, sets(tmp_path), environ={}, flags={"data_dir": tmp_path}))
    published = config.load_resolved(path)
    environ = {**role_env("tuner0", port), **nothing_here}
    mine = ["search.max_trials=7", "fault_tolerance.coordinator_timeout_seconds=1"]
    done = run(argv("worker", tmp_path, *mine), tmp_path, extra_env=environ)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    message = " ".join(done.stderr.split())
    worker = config.load("quick", None, sets(tmp_path, *mine), environ=environ, flags={"data_dir": tmp_path})
    assert f"error: worker tuner0 refuses to run: this process's config {worker.digest()} is not" in message
    assert f"the experiment's config {published.digest()} published by its coordinator at" in message
    assert "fault_tolerance.coordinator_timeout_seconds (coordinator: 300.0, this process: 1.0)" in message
    assert "search.max_trials (coordinator: 100, this process: 7)" in message
    assert "Traceback" not in done.stdout + done.stderr


def test_a_worker_without_a_coordinator_gives_up_after_its_timeout(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    done = run(
        argv("worker", tmp_path, "fault_tolerance.coordinator_timeout_seconds=1"),
        tmp_path,
        extra_env=role_env("tuner3", port),
    )
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    message = " ".join(done.stderr.split())
    assert "error: worker tuner3 gives up: the coordinator did not answer within 1s: no config published at" in message
    assert "is a coordinator running for experiment 'pods'" in message
