"""Fault tolerance with real processes on loopback: dead workers, a dead coordinator, failing
trials, and median stopping. Leases are shortened so recovery happens in seconds, but kept long
enough that a healthy worker whose heartbeats are starved on a loaded machine keeps its trial."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fmtune import config, results
from fmtune.run import experiment

from ..conftest import CLASSIC
from .helpers import free_ports, role_env, run, tune_argv
from .test_local import descendants, read_until, start

pytestmark = pytest.mark.timeout(600)
HEARTBEAT_SECONDS, LEASE_SECONDS = 1.0, 15.0
FAST = [f"fault_tolerance.heartbeat_seconds={HEARTBEAT_SECONDS:g}", f"fault_tolerance.lease_seconds={LEASE_SECONDS:g}"]


def sets(*assignments: str) -> list[str]:
    return [arg for a in assignments for arg in ("--set", a)]


def test_dead_worker_loses_its_trial_and_the_search_completes(synthetic_dir: Path, tmp_path: Path) -> None:
    argv = tune_argv(
        synthetic_dir,
        tmp_path,
        *sets(*FAST, "search.epochs=12", "search.algorithm=random"),
        "--max-restarts",
        "0",
        trials=5,
    )
    proc = start(argv, tmp_path)
    seen: list[str] = []
    try:
        match = read_until(proc, r"\[tuner1\] \S+ trial (\d) epoch 2/12", seen)
        victims = [pid for pid, tid in descendants(proc.pid).items() if tid == "tuner1"]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        requeued = read_until(
            proc,
            rf"tuner1 silent for over {LEASE_SECONDS:.0f}s: trial {match.group(1)} goes back to the queue",
            seen,
            timeout=LEASE_SECONDS + 120,
        )
        recovery = time.monotonic() - killed_at
        assert proc.stdout is not None
        seen += proc.stdout.readlines()
        assert proc.wait(timeout=300) == 0, "".join(seen[-60:])
    finally:
        proc.kill()
    # The lease, one reaper poll, and the log line's way through two pipes.
    assert requeued and recovery < 1.5 * LEASE_SECONDS, (
        f"trial {match.group(1)} requeued {recovery:.1f}s after the kill, with a {LEASE_SECONDS:g}s lease"
    )
    print(f"dead worker: trial {match.group(1)} requeued {recovery:.1f}s after the kill")
    out = "".join(seen)
    assert "[fmtune] tuner1 exited with -9; not restarting after 0 restarts" in out, out[-4000:]
    assert "restarting it under the same id" not in out and "tuner1 came back" not in out, out[-4000:]
    assert len(re.findall(r"^\[tuner1\] \S+ worker tuner1: coordinator ", out, re.MULTILINE)) == 1  # started once
    assert "tuner0 silent for over" not in out, out[-4000:]  # the healthy worker kept its trials
    res = results.load(tmp_path / "runs" / "itest" / "results.json")
    assert len(res.trials) == 5 and all(t.status == "COMPLETED" for t in res.trials)
    rerun = next(t for t in res.trials if t.trial_id == match.group(1))
    assert rerun.worker == "tuner0"
    assert [h.epoch for h in rerun.history] == list(range(len(rerun.history)))  # one run's epochs, once


@pytest.mark.slow  # a whole run each; make test keeps the worker kill, the coordinator restart and failed trials
def test_a_trial_taken_back_after_the_other_workers_finished_still_runs(tmp_path: Path) -> None:
    """In process, on the leases' clock: a worker with nothing new to run is told to wait, not to
    leave, while another worker's trial may come back to the queue; then it runs that trial. So a
    worker dying near the end of a search, with its lease outlasting the others' work, costs no trial."""
    import keras_tuner as kt

    from fmtune.tuning.algorithms import make_oracle

    cfg = config.load("quick", None, [*CLASSIC, "search.algorithm=random", "search.max_trials=2", *FAST], environ={})
    now = [0.0]
    oracle: Any = make_oracle(cfg.search, cfg.fault_tolerance, cfg.seed, clock=lambda: now[0])
    oracle.set_project_dir(tmp_path, "search")
    space = kt.HyperParameters()
    space.Int("units", 8, 64, step=8)
    oracle.update_space(space)

    def finish(trial: Any, tuner_id: str) -> None:
        oracle.update_trial_from(tuner_id, trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        oracle.end_trial_from(tuner_id, trial)

    first, lost = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
    finish(first, "tuner0")
    assert oracle.create_trial("tuner0").status == "IDLE"  # tuner1's trial may yet come back
    now[0] += LEASE_SECONDS + 1  # tuner1 died; tuner0 kept asking
    assert oracle.create_trial("tuner0").status == "IDLE"
    assert oracle.reap() == ["tuner1"] and oracle.retry_queue == [lost.trial_id]
    again = oracle.create_trial("tuner0")
    assert (again.trial_id, again.status) == (lost.trial_id, "RUNNING")
    finish(again, "tuner0")
    assert oracle.create_trial("tuner0").status == "STOPPED" and oracle.search_over()
    assert {t.trial_id: t.status for t in oracle.trials.values()} == {
        first.trial_id: "COMPLETED",
        lost.trial_id: "COMPLETED",
    }


def tune_ok(argv: list[str], tmp_path: Path) -> tuple[Any, results.Results]:
    """Run `fmtune tune`, require success, and return its output and results.json."""
    done = run(argv, tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done, results.load(tmp_path / "runs" / "itest" / "results.json")


def run_worker(synthetic_dir: Path, tmp_path: Path, tuner_id: str, port: int, *assignments: str) -> Any:
    """`fmtune worker` on its own, against a coordinator port that nobody listens on."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fmtune",
            "worker",
            "--preset",
            "quick",
            "--set",
            "dataset=synthetic",
            *sets(*assignments),
            "--data-dir",
            str(synthetic_dir.parent),
        ],
        env=role_env(tuner_id, port),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_coordinator_restart_resumes_without_rerunning_completed_trials(synthetic_dir: Path, tmp_path: Path) -> None:
    cfg = config.load(
        "quick",
        None,
        [
            *CLASSIC,
            "dataset=synthetic",
            f"data_dir={synthetic_dir.parent}",
            f"workdir={tmp_path / 'runs'}",
            f"model_repo={tmp_path / 'models'}",
            "name=restart",
            "search.algorithm=random",
            "search.max_trials=6",
            "search.epochs=8",
            "search.early_stopping_patience=0",
            "search.hyperparameters.units=[32, 64]",
            "search.hyperparameters.batch_size=[32]",
            "retrain.max_epochs=1",
            *FAST,
        ],
        environ={},
    )
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    (port,) = free_ports(1)
    base = [sys.executable, "-m", "fmtune"]

    def coordinator() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*base, "coordinator", "--config", str(path)],
            env=role_env("chief", port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )

    workers = [
        subprocess.Popen(
            [*base, "worker", "--config", str(path), "--threads", "1"],
            env=role_env(f"tuner{i}", port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        for i in range(2)
    ]
    first = coordinator()
    seen: list[str] = []
    try:
        read_until(first, r"trial 2/6 done", seen)
        first.kill()
        first.wait()
        done_before = sorted(set(re.findall(r"trial \d/6 done: .*\[trial (\d) on", "".join(seen))))
        second = coordinator()
        out, _ = second.communicate(timeout=300)
        assert second.returncode == 0, out[-4000:]
        worker_out = "".join(w.communicate(timeout=60)[0] for w in workers)
    finally:
        for proc in (first, *workers):
            proc.kill()
    assert all(w.returncode == 0 for w in workers), ([w.returncode for w in workers], worker_out[-6000:])
    starts = re.findall(r"trial (\d) start:", worker_out)
    for trial_id in done_before:
        assert starts.count(trial_id) == 1, f"completed trial {trial_id} ran again"
    reruns = len(starts) - len(set(starts))
    print(f"coordinator restart: {len(done_before)} trials done before the kill, {reruns} re-run(s) in all")
    res = results.load(tmp_path / "runs" / "restart" / "results.json")
    assert len(res.trials) == 6 and all(t.status == "COMPLETED" for t in res.trials)


def test_failing_trials_are_marked_failed_and_the_search_goes_on(synthetic_dir: Path, tmp_path: Path) -> None:
    argv = tune_argv(
        synthetic_dir,
        tmp_path,
        *sets(
            "search.algorithm=grid",
            "search.hyperparameters.dropout=[0.1, 1.5]",  # Dropout(1.5) raises in build
            "search.hyperparameters.num_layers=1",
            "search.hyperparameters.units=[32]",
            "search.hyperparameters.learning_rate=[0.005, 0.01]",
            "fault_tolerance.max_retries_per_trial=1",
            "fault_tolerance.max_consecutive_failures=3",
        ),
        trials=4,
    )
    done, res = tune_ok(argv, tmp_path)
    by_status = {s: [t for t in res.trials if t.status == s] for s in ("COMPLETED", "FAILED")}
    assert len(by_status["COMPLETED"]) == 2 and len(by_status["FAILED"]) == 2
    for trial in by_status["FAILED"]:
        assert trial.hyperparameters["dropout_0"] == 1.5 and "rate" in (trial.message or "")
    assert res.best_hyperparameters is not None and res.best_hyperparameters["dropout_0"] == 0.1
    assert "failed and will be retried" in done.stdout  # one retry each before giving up


@pytest.mark.slow  # a whole run each; make test keeps the worker kill, the coordinator restart and failed trials
def test_too_many_failures_stop_the_search_with_a_clear_message(synthetic_dir: Path, tmp_path: Path) -> None:
    argv = tune_argv(
        synthetic_dir,
        tmp_path,
        *sets(
            # The first grid point (the defaults) trains; every later one raises in build.
            "search.algorithm=grid",
            "search.hyperparameters.num_layers=1",
            "search.hyperparameters.units=[32]",
            "search.hyperparameters.dropout=[0.1, 1.5, 1.6, 1.7, 1.8, 1.9]",
            "fault_tolerance.max_retries_per_trial=0",
            "fault_tolerance.max_consecutive_failures=2",
        ),
        trials=6,
    )
    started = time.monotonic()
    done = run(argv, tmp_path, timeout=300)
    assert done.returncode != 0
    assert "2 trials failed in a row" in done.stdout + done.stderr
    assert time.monotonic() - started < 120
    res = results.load(tmp_path / "runs" / "itest" / "results.json")
    assert sum(t.status == "FAILED" for t in res.trials) >= 2 and res.exported_version is None


@pytest.mark.slow  # a whole run each; make test keeps the worker kill, the coordinator restart and failed trials
def test_median_stopping_stops_obviously_bad_trials(synthetic_dir: Path, tmp_path: Path) -> None:
    argv = tune_argv(
        synthetic_dir,
        tmp_path,
        *sets(
            "search.algorithm=grid",
            "search.epochs=6",
            "search.hyperparameters.num_layers=1",
            "search.hyperparameters.dropout=0.1",
            "search.hyperparameters.units=[32, 48, 64, 80]",
            "search.hyperparameters.learning_rate=[0.005, 0.0000001]",
            "fault_tolerance.median_stopping.enabled=true",
            "fault_tolerance.median_stopping.min_trials=2",
            "fault_tolerance.median_stopping.start_step=1",
        ),
        trials=8,
    )
    done, res = tune_ok(argv, tmp_path)
    stopped = [t for t in res.trials if t.status == "STOPPED"]
    assert stopped, [(t.trial_id, t.status, t.hyperparameters) for t in res.trials]
    for trial in stopped:
        assert trial.hyperparameters["learning_rate"] == pytest.approx(1e-7)
        assert len(trial.history) < 6  # stopped before its last epoch
    assert res.best_hyperparameters is not None and res.best_hyperparameters["learning_rate"] == 0.005
    assert "stopped early" in done.stdout
    assert (
        yaml.safe_load((tmp_path / "runs" / "itest" / "config.yaml").read_text())["fault_tolerance"]["median_stopping"][
            "enabled"
        ]
        is True
    )


def test_worker_gives_up_when_the_coordinator_is_gone(synthetic_dir: Path, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    started = time.monotonic()
    done = run_worker(
        synthetic_dir,
        tmp_path,
        "tuner0",
        port,
        "fault_tolerance.coordinator_timeout_seconds=3",
        "fault_tolerance.lease_seconds=20",
    )
    assert done.returncode == 3
    assert "worker tuner0 gives up: the coordinator did not answer within 3s" in done.stderr
    assert time.monotonic() - started < 60


@pytest.mark.slow  # a whole run each; make test keeps the worker kill, the coordinator restart and failed trials
def test_a_worker_starting_after_the_search_ended_leaves_cleanly(synthetic_dir: Path, tmp_path: Path) -> None:
    """The coordinator's state.json says the search is over: a worker of that experiment leaves at
    once; one whose config differs (an upgrade that asks for more trials) asks the coordinator."""
    from fmtune import run_state

    (port,) = free_ports(1)
    assignments = [
        *CLASSIC,
        "name=late",
        f"workdir={tmp_path / 'runs'}",
        "fault_tolerance.coordinator_timeout_seconds=3",
    ]
    cfg = config.load(
        "quick", None, ["dataset=synthetic", *assignments], environ={}, flags={"data_dir": synthetic_dir.parent}
    )
    over = run_state.RunState(
        experiment="late",
        config_digest=cfg.digest(),
        phase=run_state.Phase.DONE,
        max_trials=cfg.search.max_trials,
        objective="val_accuracy",
    )
    run_state.save(over, cfg.experiment_dir)
    experiment.publish(cfg)  # as its coordinator did: the worker takes the run's seed from it
    done = run_worker(synthetic_dir, tmp_path, "tuner7", port, *assignments)
    assert done.returncode == 0, done.stderr
    assert "the search is already over" in done.stdout
    run_state.save(over.model_copy(update={"config_digest": "another"}), cfg.experiment_dir)
    done = run_worker(synthetic_dir, tmp_path, "tuner7", port, *assignments)
    assert done.returncode == 3, done.stdout[-2000:] + done.stderr[-2000:]
    assert "the coordinator did not answer within 3s" in done.stderr
