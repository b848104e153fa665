"""The chief's oracle without gRPC or training: failures that stop the search, median stopping,
when the search is over, and a resumed search that no worker joins. Its leases are in
test_leases.py, its files and resume in test_persist.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import finish
from .conftest import oracle_for as plain_oracle
from .conftest import short_lease_oracle as oracle_for


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
    assert oracle.control.abort_reason == "2 trials failed in a row; the last one: ValueError: boom"
    assert oracle.search_over()
    assert oracle.create_trial("tuner1").status == "STOPPED"


def test_a_failed_trial_is_never_the_best(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path, "fault_tolerance.max_retries_per_trial=0", "search.max_trials=3")
    failed = oracle.create_trial("tuner0")
    failed.status, failed.message = "FAILED", "Traceback...\nValueError: output size would be zero"
    oracle.end_trial_from("tuner0", failed)
    assert oracle.get_best_trials(1) == []  # Keras Tuner's own would offer the failed trial
    done = oracle.create_trial("tuner0")
    finish(oracle, done, "tuner0", 0.5)
    assert [t.trial_id for t in oracle.get_best_trials(2)] == [done.trial_id]


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
    assert resumed.control.abort_reason is not None
    assert resumed.control.abort_reason.startswith("no worker has asked for a trial in 0.5s while trials remain")
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


def test_a_bayesian_search_begins_at_the_centre_of_its_space(tmp_path: Path) -> None:
    """The first trial is the space's middle (what no search would train); the random phase follows."""
    import keras_tuner as kt

    space = kt.HyperParameters()
    space.Int("units", 8, 64)
    space.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    space.Choice("batch_size", [64, 128, 256])
    oracle: Any = plain_oracle(tmp_path, "search.algorithm=bayesian", "search.max_trials=10", space=space)
    first = oracle.create_trial("tuner0")
    finish(oracle, first, "tuner0", 0.5)
    second = oracle.create_trial("tuner0")
    assert first.hyperparameters.values == pytest.approx({"units": 36, "learning_rate": 1e-3, "batch_size": 128})
    assert second.hyperparameters.values != first.hyperparameters.values


def test_bayesian_search_over_a_space_with_nothing_to_tune_runs_its_one_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's model with fixed values alone: no suggestion is asked for or made, and the search
    ends once the one configuration has run."""
    import keras_tuner as kt

    space = kt.HyperParameters()
    space.Fixed("units", 32)
    oracle: Any = plain_oracle(tmp_path, "search.algorithm=bayesian", "search.max_trials=10", space=space)

    def never(*args: Any) -> None:
        raise AssertionError("a suggestion was wanted in a space with nothing to tune")

    monkeypatch.setattr(oracle.suggestions, "take", never)
    monkeypatch.setattr(oracle.suggestions.suggester, "picks", never)
    oracle.start_background()
    try:
        statuses = []
        for _ in range(5):
            trial = oracle.create_trial("tuner0")
            statuses.append(trial.status)
            if trial.status == "RUNNING":
                finish(oracle, trial, "tuner0", 0.5)
    finally:
        oracle.stop_background()
    assert statuses[0] == "RUNNING" and "STOPPED" in statuses
    assert oracle.search_over()
