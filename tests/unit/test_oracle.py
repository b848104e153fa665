"""The chief's oracle without gRPC or training: leases, refused reports, resume, median stopping."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras_tuner as kt
import pytest

from fmtune import config
from fmtune.tuning.algorithms import make_oracle

from ..conftest import CLASSIC


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def oracle_for(tmp_path: Path, *assignments: str, clock: Clock | None = None) -> Any:
    cfg = config.load(
        "quick",
        None,
        [
            *CLASSIC,
            "search.algorithm=random",
            "search.max_trials=3",
            "fault_tolerance.heartbeat_seconds=0.05",
            "fault_tolerance.lease_seconds=0.3",
            *assignments,
        ],
        environ={},
    )
    oracle = make_oracle(cfg)
    if clock is not None:
        oracle.leases.clock = clock
    oracle.set_project_dir(tmp_path, "search")
    hp = kt.HyperParameters()
    hp.Int("units", 8, 64)
    oracle.update_space(hp)
    return oracle


def finish(oracle: Any, trial: Any, caller: str, value: float) -> None:
    oracle.update_trial_from(caller, trial.trial_id, {"val_accuracy": value}, step=0)
    trial.status = "COMPLETED"
    oracle.end_trial_from(caller, trial)


def test_silent_worker_loses_its_trial_and_its_late_reports_are_refused(tmp_path: Path) -> None:
    clock = Clock()
    oracle = oracle_for(tmp_path, clock=clock)
    trial = oracle.create_trial("tuner0")
    assert oracle.heartbeat(trial.trial_id, "tuner0").status == "RUNNING"
    clock.now += 0.29
    assert oracle.reap() == []  # within its lease (0.3 s)
    clock.now += 0.02
    assert oracle.reap() == ["tuner0"]
    assert "tuner0" not in oracle.tuner_ids and trial.trial_id in oracle.retry_queue
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
    clock = Clock()
    oracle = oracle_for(tmp_path, clock=clock)
    finish(oracle, oracle.create_trial("tuner0"), "tuner0", 0.5)
    assert "tuner0" in oracle.tuner_ids  # Keras Tuner waits for it to ask again
    clock.now += 0.29
    assert oracle.reap() == []
    clock.now += 0.02
    assert oracle.reap() == ["tuner0"] and not oracle.tuner_ids


def test_restart_after_the_last_trial_does_not_run_it_again(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path)
    for i in range(3):
        finish(oracle, oracle.create_trial(f"tuner{i % 2}"), f"tuner{i % 2}", 0.5 + i / 10)
    resumed = oracle_for(tmp_path)
    resumed.reload()
    assert not resumed.ongoing_trials and not resumed.retry_queue
    assert resumed.search_over()


def test_restart_keeps_trials_in_flight_with_their_workers(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path, "fault_tolerance.lease_seconds=30", "fault_tolerance.heartbeat_seconds=1")
    done = oracle.create_trial("tuner0")
    finish(oracle, done, "tuner0", 0.7)
    running = oracle.create_trial("tuner1")
    resumed = oracle_for(tmp_path, "fault_tolerance.lease_seconds=30", "fault_tolerance.heartbeat_seconds=1")
    resumed.reload()
    assert resumed.holder(running.trial_id) == "tuner1" and not resumed.retry_queue
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
    assert oracle.search_over()
    assert oracle.create_trial("tuner1").status == "STOPPED"


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


def test_the_search_is_over_only_when_nothing_is_left_to_hand_out(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path, "fault_tolerance.max_retries_per_trial=1")
    trials = [oracle.create_trial(f"tuner{i}") for i in range(3)]
    for trial in trials[:2]:
        finish(oracle, trial, "tuner0" if trial is trials[0] else "tuner1", 0.5)
    assert not oracle.search_over()  # trial 2 still runs
    trials[2].status, trials[2].message = "INVALID", "boom"  # a failure Keras Tuner retries
    oracle.end_trial_from("tuner2", trials[2])
    assert oracle.retry_queue == [trials[2].trial_id] and not oracle.search_over()  # it will run again
    again = oracle.create_trial("tuner0")
    finish(oracle, again, "tuner0", 0.6)
    assert oracle.search_over()
    assert oracle.create_trial("tuner1").status == "STOPPED"


def test_a_resumed_search_that_no_worker_joins_ends_with_a_clear_error(tmp_path: Path) -> None:
    from fmtune.run.coordinator import serve_oracle
    from fmtune.tuning.roles import Role, free_port

    oracle = oracle_for(tmp_path)
    for i in range(3):
        finish(oracle, oracle.create_trial(f"tuner{i}"), f"tuner{i}", 0.5)
    # An upgrade asks for more trials, but no worker will come (they saw the search as over).
    resumed = oracle_for(tmp_path, "search.max_trials=5", "fault_tolerance.worker_wait_seconds=0.5")
    resumed.reload()
    assert not resumed.search_over()
    started = time.monotonic()
    serve_oracle(resumed, Role("chief", "127.0.0.1", free_port()), token="t")
    assert time.monotonic() - started < 10
    assert resumed.abort_reason is not None
    assert resumed.abort_reason.startswith("no worker has asked for a trial in 0.5s while trials remain")
    assert resumed.search_over() and len(resumed.trials) == 3


def test_bayesian_suggestions_follow_trials_that_asha_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ASHA most trials end STOPPED, and the GP learns from them: each must wake the
    background suggester, or the first create after the random phase waits for nothing."""
    from fmtune.tuning import bayesian

    monkeypatch.setattr(bayesian, "SUGGESTION_WAIT_SECONDS", 60.0)  # an IDLE answer would take this long
    oracle = oracle_for(
        tmp_path,
        "search.algorithm=bayesian",
        "search.max_trials=10",
        "search.asha.enabled=true",
        "search.epochs=9",
        "fault_tolerance.lease_seconds=600",
    )
    oracle.start_background()
    try:
        ended = []
        for value in (0.9, 0.1, 0.2, 0.3):  # the first sets the rung; ASHA stops the others there
            trial = oracle.create_trial("tuner0")
            answer = oracle.update_trial_from("tuner0", trial.trial_id, {"val_accuracy": value}, step=0)
            trial.status = "COMPLETED"
            oracle.end_trial_from("tuner0", trial)
            ended.append((answer.status, oracle.trials[trial.trial_id].status))
        assert ended[1:] == [("STOPPED", "STOPPED")] * 3
        assert len(oracle._completed()) >= oracle._initial_points()  # past the random phase
        started = time.monotonic()
        suggested = oracle.create_trial("tuner0")
        waited = time.monotonic() - started
    finally:
        oracle.stop_background()
    assert suggested.status == "RUNNING", f"no suggestion after {waited:.1f}s"
    assert waited < 30
