"""The coordinator's metrics say what its run state says."""

from __future__ import annotations

from datetime import datetime, timezone

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fmtune.dashboard import metrics
from fmtune.run_state import BudgetSpent, Phase, RunState, WorkerState
from fmtune.trials import Requeue, TrialRecord

AT = datetime(2026, 12, 3, tzinfo=timezone.utc)


def state() -> RunState:
    trials = [
        TrialRecord(trial_id="0", status="COMPLETED", score=0.9, started_at=AT, epoch_seconds=[1.5, 3.0]),
        TrialRecord(trial_id="1", status="STOPPED", stopped_by="asha", started_at=AT, epoch_seconds=[4.0]),
        TrialRecord(trial_id="2", status="COMPLETED", stopped_by="budget", started_at=AT, epoch_seconds=[25.0]),
        TrialRecord(
            trial_id="3", status="RUNNING", started_at=AT, requeues=[Requeue(worker="tuner1", at=AT)], epoch_seconds=[]
        ),
        TrialRecord(trial_id="4", status="QUEUED"),
    ]
    return RunState(
        experiment="e",
        config_digest="d",
        max_trials=10,
        objective="val_accuracy",
        phase=Phase.SEARCH,
        best_score=0.9,
        budget=BudgetSpent(seconds=600, used_seconds=200),
        trials=trials,
        workers=[WorkerState(worker="tuner0", status="running"), WorkerState(worker="tuner1", status="silent")],
        state_write_failures=2,
    )


def scrape(found: RunState | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    page = generate_latest(metrics.registry(lambda: found)).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def test_trials_by_status_and_what_stopped_them():
    values = scrape(state())
    assert values[("fmtune_trials_started_total", ())] == 4
    assert values[("fmtune_trials_ended_total", (("status", "COMPLETED"), ("stopped_by", "none")))] == 1
    assert values[("fmtune_trials_ended_total", (("status", "COMPLETED"), ("stopped_by", "budget")))] == 1
    assert values[("fmtune_trials_ended_total", (("status", "STOPPED"), ("stopped_by", "asha")))] == 1
    assert values[("fmtune_trials", (("status", "RUNNING"),))] == 1
    assert values[("fmtune_trials", (("status", "QUEUED"),))] == 1
    assert values[("fmtune_trials_requeued_total", ())] == 1


def test_epoch_seconds_as_a_histogram():
    values = scrape(state())
    assert values[("fmtune_trial_epoch_seconds_bucket", (("le", "2.0"),))] == 1
    assert values[("fmtune_trial_epoch_seconds_bucket", (("le", "5.0"),))] == 3
    assert values[("fmtune_trial_epoch_seconds_bucket", (("le", "+Inf"),))] == 4
    assert values[("fmtune_trial_epoch_seconds_sum", ())] == 33.5


def test_workers_phase_budget_best_and_write_failures():
    values = scrape(state())
    assert values[("fmtune_workers", (("status", "running"),))] == 1
    assert values[("fmtune_workers", (("status", "silent"),))] == 1
    assert values[("fmtune_workers", (("status", "left"),))] == 0
    assert values[("fmtune_phase", (("phase", "search"),))] == 1
    assert values[("fmtune_phase", (("phase", "retrain"),))] == 0
    assert values[("fmtune_budget_seconds_left", ())] == 400
    assert values[("fmtune_best_objective", (("direction", "max"), ("objective", "val_accuracy")))] == 0.9
    assert values[("fmtune_state_write_failures_total", ())] == 2


def test_no_state_yet_gives_no_metrics():
    assert scrape(None) == {}
