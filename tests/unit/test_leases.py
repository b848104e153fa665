"""Leases on running trials and the liveness of workers (``fmtune.tuning.leases``): the times
alone on a clock moved by hand, then what the oracle does when they run out."""

from __future__ import annotations

from pathlib import Path

from fmtune.tuning.leases import Leases

from .conftest import Clock, finish
from .conftest import short_lease_oracle as oracle_for


def test_a_lease_runs_out_only_after_its_deadline_and_each_renewal_moves_it() -> None:
    clock = Clock(0.5)
    leases = Leases(10.0, clock=clock)
    leases.renew("1")
    leases.renew("2")
    assert leases.deadline("1") == 10.5 and leases.deadline("3") is None
    clock.now = 5.0
    leases.renew("2")  # a heartbeat
    assert leases.deadline("2") == 15.0
    clock.now = 10.5
    assert leases.expired(["1", "2", "3"]) == []  # at its deadline, not past it
    clock.now = 10.75
    assert leases.expired(["1", "2", "3"]) == ["1"]  # "3" holds no lease: it never runs out
    leases.release("1")
    leases.release("4")  # releasing a trial without a lease is no error
    assert leases.expired(["1", "2"]) == [] and leases.deadline("1") is None
    clock.now = 15.25
    assert leases.expired(["2", "1"]) == ["2"]


def test_a_worker_is_silent_after_a_lease_without_a_call_and_quiet_counts_from_the_last_call() -> None:
    clock = Clock(100.0)
    leases = Leases(10.0, clock=clock)
    clock.now = 107.0
    assert leases.quiet_for() == 7.0  # no call yet: since the leases began
    leases.seen("tuner0")
    clock.now = 109.0
    leases.seen("tuner1")
    calls = leases.last_calls()
    assert calls == {"tuner0": 107.0, "tuner1": 109.0}
    calls["tuner0"] = 0.0  # a copy: the reader cannot change the leases
    assert leases.last_calls()["tuner0"] == 107.0
    clock.now = 117.0
    assert leases.silent(["tuner0", "tuner1", "tuner9"]) == []  # tuner0 is exactly a lease old
    assert leases.quiet_for() == 8.0
    clock.now = 118.0
    assert leases.silent(["tuner0", "tuner1", "tuner9"]) == ["tuner0"]  # one never seen is not silent
    clock.now = 119.5
    assert leases.silent(["tuner1", "tuner0"]) == ["tuner1", "tuner0"]
    assert leases.quiet_for() == 10.5


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
