"""The run state the coordinator keeps in state.json as the search goes on, without training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import keras_tuner as kt

from fmtune import config, layout, run_state
from fmtune.dashboard import view
from fmtune.run.budget import Budget
from fmtune.run.state_writer import StateWriter
from fmtune.tuning.live_view import live_view

from .conftest import Clock, oracle_for


def setup(
    tmp_path: Path, *assignments: str, clock: Clock | None = None, budget: Budget | None = None
) -> tuple[Any, StateWriter]:
    settings = [
        "search.algorithm=random",
        "search.asha.enabled=false",
        "budget_minutes=null",
        f"workdir={tmp_path}",
        "fault_tolerance.heartbeat_seconds=1",
        "fault_tolerance.lease_seconds=10",
        *assignments,
    ]
    cfg = config.load("quick", None, settings, environ={})
    hp = kt.HyperParameters()
    hp.Int("units", 8, 4096)
    hp.Float("learning_rate", 1e-4, 1e-1, sampling="log")
    hp.Choice("activation", ["relu", "tanh"])
    oracle = oracle_for(tmp_path / "oracle", *settings, clock=clock, space=hp)
    return oracle, StateWriter(cfg, oracle, budget)


def report(oracle: Any, trial: Any, worker: str, epochs: int, end: bool = True) -> None:
    for step in range(epochs):
        value = trial.hyperparameters.values["units"] / 4096 * (step + 1) / epochs
        oracle.update_trial_from(worker, trial.trial_id, {"val_accuracy": value, "loss": 1 - value}, step=step)
    if end:
        trial.status = "COMPLETED"
        oracle.end_trial_from(worker, trial)


def test_state_of_1200_trials_costs_little_per_write(tmp_path: Path) -> None:
    """1200 trials of 3 epochs, 128 of them running: a write re-encodes only what changed."""
    oracle, writer = setup(tmp_path, "search.max_trials=1400")
    # The oracle's own files are not what is measured here (and one caller waiting for each write
    # would take minutes): it keeps everything in memory.
    oracle.save = lambda: None
    oracle.save_trial = lambda trial: None
    for i in range(1200):
        report(oracle, oracle.create_trial(f"tuner{i % 128}"), f"tuner{i % 128}", 3)
    running = [oracle.create_trial(f"tuner{i}") for i in range(128)]
    started = time.perf_counter()
    writer.update(force=True)
    first = time.perf_counter() - started
    costs = []
    for trial in running[:64]:  # an epoch from half the running trials, one finishes
        report(oracle, trial, oracle.holder(trial.trial_id), 1, end=False)
    for _ in range(5):
        started = time.perf_counter()
        writer.update(force=True)
        costs.append(time.perf_counter() - started)
    locked = []
    for _ in range(5):
        started = time.perf_counter()
        live_view(oracle, set(writer.trials.watched), writer.trials.started, writer.trials.ended, False)
        locked.append(time.perf_counter() - started)
    size = (writer.experiment_dir / layout.STATE).stat().st_size
    print(
        f"state of 1328 trials ({size / 1e6:.2f} MB): first write {first * 1000:.1f} ms, "
        f"then {min(costs) * 1000:.1f}-{max(costs) * 1000:.1f} ms per write, "
        f"{max(locked) * 1000:.2f} ms under the oracle's lock"
    )
    state = run_state.load(writer.experiment_dir)
    assert state is not None and len(state.trials) == 1328
    assert state.trials_finished == 1200 and state.trials_running == 128
    assert sum(t.status == "RUNNING" for t in state.trials) == 128
    assert [e.epoch for e in state.trials[0].history] == [0, 1, 2]
    assert max(costs) < 0.1 and max(locked) < 0.02


def test_a_silent_worker_and_its_requeued_trial(tmp_path: Path) -> None:
    clock = Clock()
    oracle, writer = setup(tmp_path, "search.max_trials=3", clock=clock)
    done = oracle.create_trial("tuner0")
    report(oracle, done, "tuner0", 2)
    lost = oracle.create_trial("tuner1")
    report(oracle, lost, "tuner1", 1, end=False)
    kept = oracle.create_trial("tuner0")
    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None
    workers = {w.worker: w for w in state.workers}
    assert workers["tuner1"].status == "running" and workers["tuner1"].trial_id == lost.trial_id
    assert workers["tuner1"].lease_expires_at is not None
    clock.now += 6  # tuner1 says nothing; tuner0 heartbeats
    oracle.heartbeat(kept.trial_id, "tuner0")
    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None
    assert {w.worker: w.status for w in state.workers} == {"tuner0": "running", "tuner1": "silent"}
    clock.now += 5  # past its lease: the trial goes back to the queue
    oracle.heartbeat(kept.trial_id, "tuner0")
    assert oracle.reap() == ["tuner1"]
    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None
    trials = {t.trial_id: t for t in state.trials}
    assert trials[lost.trial_id].status == "QUEUED"
    assert [r.worker for r in trials[lost.trial_id].requeues] == ["tuner1"]
    assert {w.worker: w.status for w in state.workers}["tuner1"] == "silent"
    assert trials[done.trial_id].status == "COMPLETED" and trials[done.trial_id].worker == "tuner0"
    assert [p.trial_id for p in state.best_history] == [done.trial_id]
    assert state.trials_finished == 1


def test_state_says_which_rung_a_trial_reached_what_stopped_it_and_the_budget_spent(tmp_path: Path) -> None:
    budget = Budget(600, started_at=time.time() - 120, retrain_share=0.5, min_epochs=1)
    oracle, writer = setup(
        tmp_path, "search.max_trials=4", "search.asha.enabled=true", "search.epochs=9", budget=budget
    )
    good, poor = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
    for trial, worker, score in ((good, "tuner0", 0.9), (poor, "tuner1", 0.1)):
        answer = oracle.update_trial_from(worker, trial.trial_id, {"val_accuracy": score}, step=0)
    assert answer.status == "STOPPED"  # below the first rung's cutoff
    for step in (1, 2):
        oracle.update_trial_from("tuner0", good.trial_id, {"val_accuracy": 0.9}, step=step)
    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None and state.budget is not None
    trials = {t.trial_id: t for t in state.trials}
    assert (trials[poor.trial_id].rung, trials[poor.trial_id].stopped_by) == (0, "Asha")
    assert (trials[good.trial_id].rung, trials[good.trial_id].stopped_by) == (1, None)  # 3 epochs: rung 2 of [1, 3]
    assert state.budget.seconds == 600 and 119 < state.budget.used_seconds < 180
    rows = {r["trial_id"]: r for r in view.build(state, {})["trials"]}
    assert rows[poor.trial_id]["stopped_by"] == "Asha" and rows[poor.trial_id]["rung"] == 0
