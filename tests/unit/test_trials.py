"""One trial type from the oracle to results.json, state.json, the dashboard and the report."""

from __future__ import annotations

from pathlib import Path

from fmtune import config, report, results, run_state
from fmtune.dashboard import view
from fmtune.results import Results
from fmtune.run.state_writer import StateWriter
from fmtune.trials import TrialRecord, best, improves, ranked
from fmtune.tuning.live_view import frozen_trials

from .conftest import Clock, oracle_for


def a_search(tmp_path: Path) -> tuple[list[TrialRecord], StateWriter]:
    """Trials in every shape a search leaves: completed, diverged, requeued, running."""
    cfg = config.load(
        "quick",
        None,
        ["budget_minutes=null", "search.asha.enabled=false", "search.algorithm=random", f"workdir={tmp_path}"],
        environ={},
    )
    clock = Clock()
    oracle = oracle_for(tmp_path / "oracle", "search.max_trials=5", "fault_tolerance.lease_seconds=30", clock=clock)
    done = oracle.create_trial("tuner0")
    for step, value in enumerate((0.5, 0.75)):
        clock.now += 2
        oracle.update_trial_from("tuner0", done.trial_id, {"val_accuracy": value, "loss": 1 - value}, step=step)
    done.status = "COMPLETED"
    oracle.end_trial_from("tuner0", done)
    diverged = oracle.create_trial("tuner0")
    oracle.update_trial_from("tuner0", diverged.trial_id, {"val_accuracy": 0.1, "loss": float("nan")}, step=0)
    diverged.status = "COMPLETED"
    oracle.end_trial_from("tuner0", diverged)
    oracle.create_trial("tuner1")
    clock.now += 31  # tuner1 falls silent: its trial goes back to the queue
    oracle.reap()
    oracle.create_trial("tuner0")  # the queued trial, now tuner0's
    return frozen_trials(oracle), StateWriter(cfg, oracle, None)


def test_one_trial_type_round_trips_through_results_and_state(tmp_path: Path) -> None:
    trials, writer = a_search(tmp_path)
    assert [t.status for t in trials] == ["COMPLETED", "COMPLETED", "RUNNING"]
    assert trials[1].history[0].metrics["loss"] is None  # not a finite number, in every file alike
    assert [r.worker for r in trials[2].requeues] == ["tuner1"] and trials[2].worker == "tuner0"
    assert trials[0].epoch_seconds == [2.0, 2.0] and trials[0].best_epoch == 1

    record = Results(
        experiment="x",
        dataset="fashion_mnist",
        family="mlp",
        algorithm="random",
        objective=config.Objective(),
        max_trials=5,
        config_digest="d",
        trials=trials,
        best_trial_id=trials[0].trial_id,
        best_hyperparameters=trials[0].hyperparameters,
        tuning_seconds=1.0,
    )
    results.save(record, tmp_path)
    assert results.load(tmp_path / "results.json").trials == trials

    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None and state.trials == trials
    assert run_state.from_results(results.load(tmp_path / "results.json")).trials == trials

    rows = view.build(state, {})["trials"]
    assert [r["trial_id"] for r in rows] == [t.trial_id for t in trials]
    assert report.trial_cells(1, trials[0])[:3] == ["1", trials[0].trial_id, "completed"]


def test_best_so_far_is_one_comparison() -> None:
    trials = [
        TrialRecord(trial_id="0", status="COMPLETED", score=0.8),
        TrialRecord(trial_id="1", status="STOPPED", score=0.95),  # from fewer epochs: not the best
        TrialRecord(trial_id="2", status="COMPLETED", score=0.9),
        TrialRecord(trial_id="3", status="FAILED"),
    ]
    top = best(trials, maximise=True)
    assert top is not None and top.trial_id == "2"
    assert [t.trial_id for t in ranked(trials, maximise=True)] == ["1", "2", "0", "3"]
    assert improves(0.1, 0.2, maximise=False) and not improves(0.1, 0.2, maximise=True)
