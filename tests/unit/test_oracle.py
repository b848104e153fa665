"""The chief's oracle without gRPC or training: leases, refused reports, resume, median stopping."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras_tuner as kt
import pytest

from fmtune import config
from fmtune.tuning.coordinator import _search_finished
from fmtune.tuning.oracle import make_oracle


def oracle_for(tmp_path: Path, *assignments: str) -> Any:
    cfg = config.load(
        "quick",
        None,
        [
            "search.algorithm=random",
            "search.max_trials=3",
            "fault_tolerance.heartbeat_seconds=0.05",
            "fault_tolerance.lease_seconds=0.3",
            *assignments,
        ],
        environ={},
    )
    oracle = make_oracle(cfg)
    oracle._set_project_dir(str(tmp_path), "search")
    hp = kt.HyperParameters()
    hp.Int("units", 8, 64)
    oracle.update_space(hp)
    return oracle


def finish(oracle: Any, trial: Any, caller: str, value: float) -> None:
    oracle.update_trial_from(caller, trial.trial_id, {"val_accuracy": value}, step=0)
    trial.status = "COMPLETED"
    oracle.end_trial_from(caller, trial)


def test_silent_worker_loses_its_trial_and_its_late_reports_are_refused(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path)
    trial = oracle.create_trial("tuner0")
    assert oracle.heartbeat(trial.trial_id, "tuner0").status == "RUNNING"
    time.sleep(0.4)
    assert oracle.reap() == ["tuner0"]
    assert "tuner0" not in oracle.tuner_ids and trial.trial_id in oracle._retry_queue
    # The late report is refused: it is not counted, and the worker is told to stop.
    assert oracle.update_trial_from("tuner0", trial.trial_id, {"val_accuracy": 0.9}).status == "STOPPED"
    again = oracle.create_trial("tuner1")
    assert again.trial_id == trial.trial_id
    assert oracle.update_trial_from("tuner0", trial.trial_id, {"val_accuracy": 0.9}).status == "STOPPED"
    finish(oracle, again, "tuner1", 0.8)
    oracle.end_trial_from("tuner0", again)  # the old holder's end is ignored
    stored = oracle.trials[trial.trial_id]
    assert stored.status == "COMPLETED" and stored.score == 0.8
    assert len(stored.metrics.get_history("val_accuracy")) == 1


def test_a_worker_that_dies_between_trials_is_not_awaited(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path)
    finish(oracle, oracle.create_trial("tuner0"), "tuner0", 0.5)
    assert "tuner0" in oracle.tuner_ids  # Keras Tuner waits for it to ask again
    time.sleep(0.4)
    assert oracle.reap() == ["tuner0"] and not oracle.tuner_ids


def test_restart_after_the_last_trial_does_not_run_it_again(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path)
    for i in range(3):
        finish(oracle, oracle.create_trial(f"tuner{i % 2}"), f"tuner{i % 2}", 0.5 + i / 10)
    resumed = oracle_for(tmp_path)
    resumed.reload()
    assert not resumed.ongoing_trials and not resumed._retry_queue
    assert _search_finished(resumed)


def test_restart_keeps_trials_in_flight_with_their_workers(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path, "fault_tolerance.lease_seconds=30", "fault_tolerance.heartbeat_seconds=1")
    done = oracle.create_trial("tuner0")
    finish(oracle, done, "tuner0", 0.7)
    running = oracle.create_trial("tuner1")
    resumed = oracle_for(tmp_path, "fault_tolerance.lease_seconds=30", "fault_tolerance.heartbeat_seconds=1")
    resumed.reload()
    assert resumed.holder(running.trial_id) == "tuner1" and not resumed._retry_queue
    assert resumed.update_trial_from("tuner1", running.trial_id, {"val_accuracy": 0.6}).status == "RUNNING"
    assert resumed.trials[done.trial_id].status == "COMPLETED"


def test_consecutive_failures_stop_the_search(tmp_path: Path) -> None:
    oracle = oracle_for(
        tmp_path,
        "fault_tolerance.max_retries_per_trial=0",
        "fault_tolerance.max_consecutive_failures=2",
        "search.max_trials=10",
    )
    for _ in range(2):
        trial = oracle.create_trial("tuner0")
        trial.status, trial.message = "FAILED", "Traceback...\nValueError: boom"
        oracle.end_trial_from("tuner0", trial)
    assert oracle.abort_reason == "2 trials failed in a row; the last one: ValueError: boom"
    assert oracle.create_trial("tuner1").status == "STOPPED"
    assert _search_finished(oracle)


@pytest.mark.parametrize(("value", "stopped"), [(0.2, True), (0.8, False)])
def test_median_stopping(tmp_path: Path, value: float, stopped: bool) -> None:
    oracle = oracle_for(
        tmp_path,
        "search.max_trials=10",
        "fault_tolerance.median_stopping.enabled=true",
        "fault_tolerance.median_stopping.min_trials=2",
        "fault_tolerance.median_stopping.start_step=1",
    )
    for score in (0.7, 0.9):
        trial = oracle.create_trial("tuner0")
        for step in range(3):
            oracle.update_trial_from("tuner0", trial.trial_id, {"val_accuracy": score}, step=step)
        trial.status = "COMPLETED"
        oracle.end_trial_from("tuner0", trial)
    trial = oracle.create_trial("tuner1")
    assert oracle.update_trial_from("tuner1", trial.trial_id, {"val_accuracy": value}, step=0).status == "RUNNING"
    answer = oracle.update_trial_from("tuner1", trial.trial_id, {"val_accuracy": value}, step=1)
    assert (answer.status == "STOPPED") is stopped
    trial.status = "COMPLETED"
    oracle.end_trial_from("tuner1", trial)
    assert oracle.trials[trial.trial_id].status == ("STOPPED" if stopped else "COMPLETED")
