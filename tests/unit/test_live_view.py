"""What changed in the oracle since a reader last looked (``fmtune.tuning.live_view``), on a clock
moved by hand: the trials to copy, who holds what, the leases, and the progress."""

from __future__ import annotations

from pathlib import Path

from fmtune.tuning.live_view import frozen_trials, live_view, trial_key

from .conftest import Clock, finish, oracle_for


def test_a_view_holds_what_changed_since_the_last_one_and_what_runs_or_waits(tmp_path: Path) -> None:
    clock = Clock()
    oracle = oracle_for(tmp_path, "search.max_trials=5", "fault_tolerance.lease_seconds=30", clock=clock)
    done = oracle.create_trial("tuner0")
    clock.now += 2
    finish(oracle, done, "tuner0", 0.5)
    clock.now += 1
    lost = oracle.create_trial("tuner1")
    clock.now += 1
    running = oracle.create_trial("tuner2")

    first = live_view(oracle, set(), since_start=0, since_end=0, everything=False)
    assert sorted(first.trials) == sorted([done.trial_id, lost.trial_id, running.trial_id])
    assert [first.trials[t].status for t in (done.trial_id, lost.trial_id, running.trial_id)] == [
        "COMPLETED",
        "RUNNING",
        "RUNNING",
    ]
    assert first.trials[lost.trial_id].worker == "tuner1"
    assert first.holders == {lost.trial_id: "tuner1", running.trial_id: "tuner2"}
    assert first.lease_deadlines == {lost.trial_id: 1033.0, running.trial_id: 1034.0}  # an ended trial holds none
    assert first.queued == [] and first.waiting == {"tuner0", "tuner1", "tuner2"}
    assert first.last_calls == {"tuner0": 1002.0, "tuner1": 1003.0, "tuner2": 1004.0}
    assert (first.clock, first.started, first.ended, first.progress) == (1004.0, 3, [done.trial_id], (1, 2, 0.5))

    # Nothing changed since: only the running trials, and those asked for by name.
    again = live_view(oracle, {done.trial_id}, since_start=first.started, since_end=1, everything=False)
    assert sorted(again.trials) == sorted([done.trial_id, lost.trial_id, running.trial_id])
    quiet = live_view(oracle, set(), since_start=first.started, since_end=1, everything=False)
    assert sorted(quiet.trials) == sorted([lost.trial_id, running.trial_id]) and quiet.ended == []

    clock.now += 29.5  # tuner1 falls silent, and so does tuner0 between trials; tuner2 heartbeats
    oracle.heartbeat(running.trial_id, "tuner2")
    assert oracle.reap() == ["tuner1", "tuner0"]
    later = live_view(oracle, set(), since_start=3, since_end=1, everything=False)
    assert sorted(later.trials) == sorted([lost.trial_id, running.trial_id])
    assert later.trials[lost.trial_id].status == "QUEUED"  # the oracle's own says IDLE
    assert oracle.trials[lost.trial_id].status == "IDLE"
    assert [r.worker for r in later.trials[lost.trial_id].requeues] == ["tuner1"]
    assert later.queued == [lost.trial_id] and later.holders == {running.trial_id: "tuner2"}
    assert later.lease_deadlines == {running.trial_id: 1063.5} and later.waiting == {"tuner2"}
    assert later.progress == (1, 1, 0.5)

    everything = live_view(oracle, set(), since_start=3, since_end=1, everything=True)
    assert sorted(everything.trials) == sorted(oracle.trials)


def test_frozen_trials_come_in_the_order_of_their_ids(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path, "search.max_trials=12")
    made = [oracle.create_trial(f"tuner{i}") for i in range(11)]
    finish(oracle, made[10], "tuner10", 0.4)
    trials = frozen_trials(oracle)
    assert [t.trial_id for t in trials] == [t.trial_id for t in made]
    assert [t.status for t in trials] == ["RUNNING"] * 10 + ["COMPLETED"]
    assert sorted(["10", "9", "b", "a", "02"], key=trial_key) == ["02", "9", "10", "a", "b"]
