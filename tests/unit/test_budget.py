"""The time budget: its start kept across restarts, its reserve, and the search it closes inside
the oracle, on a clock moved by hand (no gRPC, no training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fmtune.run.budget import (
    VALIDATION_COST,
    Budget,
    epoch_scale,
    first_epoch_costs,
    started_at,
    trial_epoch_costs,
)
from fmtune.text import parse_duration

from .conftest import Clock, oracle_for


def budgeted(tmp_path: Path, clock: Clock, seconds: float, share: float, scale: float = 1.0) -> tuple[Any, Budget]:
    """An oracle whose search closes when the budget says so (as the coordinator wires it)."""
    oracle = oracle_for(tmp_path, "search.max_trials=50", clock=clock)
    budget = Budget(
        seconds,
        clock.now,
        share,
        5,
        epoch_costs=trial_epoch_costs(oracle.book),
        epoch_scale=scale,
        first_epochs=first_epoch_costs(oracle.book),
        clock=clock,
    )
    oracle.control.search_open, oracle.control.starts_open = budget.search_open, budget.starts_open
    return oracle, budget


def report(oracle: Any, trial: Any, caller: str, value: float, step: int) -> str:
    return str(oracle.update_trial_from(caller, trial.trial_id, {"val_accuracy": value}, step=step).status)


def end(oracle: Any, trial: Any, caller: str) -> str:
    trial.status = "COMPLETED"
    oracle.end_trial_from(caller, trial)
    return str(oracle.trials[trial.trial_id].status)


def test_the_search_closes_when_only_the_reserve_is_left(tmp_path: Path) -> None:
    clock = Clock()
    oracle, _ = budgeted(tmp_path, clock, 100, share=0.4)
    first = oracle.create_trial("tuner0")
    clock.now += 2
    assert report(oracle, first, "tuner0", 0.5, 0) == "RUNNING"  # an epoch of 2 s measured
    clock.now += 50  # 52 s used: the reserve (40 s, or 5 epochs of 2 s + the finish) is not reached
    second = oracle.create_trial("tuner1")
    assert second.status == "RUNNING"
    clock.now += 9  # 61 s used: only the 40 s reserve is left
    assert oracle.create_trial("tuner2").status == "STOPPED"
    # Running trials stop at their next report, and what they reached counts.
    assert report(oracle, first, "tuner0", 0.7, 1) == "STOPPED"
    assert end(oracle, first, "tuner0") == "COMPLETED"
    assert oracle.book.attempt(first.trial_id).stopped_by == "budget"
    assert report(oracle, second, "tuner1", 0.6, 0) == "STOPPED" and end(oracle, second, "tuner1") == "COMPLETED"
    assert oracle.search_over()
    assert oracle.get_best_trials(1)[0].trial_id == first.trial_id


def test_no_trial_starts_that_could_not_end_an_epoch_before_the_search_closes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    oracle, budget = budgeted(tmp_path, clock, 100, share=0.4)
    first = oracle.create_trial("tuner0")
    clock.now += 3
    assert report(oracle, first, "tuner0", 0.5, 0) == "RUNNING"  # a first epoch of 3 s
    clock.now += 2
    assert report(oracle, first, "tuner0", 0.6, 1) == "RUNNING"
    start = budget.started_at
    assert budget.search_deadline() == pytest.approx(start + 60)  # the share's 40 s is the reserve
    clock.now = start + 56  # a first epoch begun now ends at 59 s
    second = oracle.create_trial("tuner1")
    assert second.status == "RUNNING"
    clock.now = start + 57.5  # one begun now would end at 60.5 s, after the search closes
    with caplog.at_level("INFO", logger="fmtune"):
        assert oracle.create_trial("tuner2").status == "STOPPED"
    assert "no new trial for tuner2: one would not end an epoch before the search closes" in caplog.text
    assert not oracle.search_over()
    clock.now = start + 59  # the running trials go on until the search closes
    assert report(oracle, first, "tuner0", 0.7, 2) == "RUNNING"
    clock.now = start + 61
    assert report(oracle, first, "tuner0", 0.8, 3) == "STOPPED" and end(oracle, first, "tuner0") == "COMPLETED"
    assert report(oracle, second, "tuner1", 0.6, 0) == "STOPPED" and end(oracle, second, "tuner1") == "COMPLETED"
    assert oracle.search_over()


def test_the_reserve_grows_with_what_retraining_costs(tmp_path: Path) -> None:
    clock = Clock()
    # Retraining's epochs hold four times a trial epoch's images.
    oracle, budget = budgeted(tmp_path, clock, 200, share=0.2, scale=4.0)
    trial = oracle.create_trial("tuner0")
    clock.now += 9
    report(oracle, trial, "tuner0", 0.5, 0)  # the first epoch also builds the model: not counted
    assert budget.retrain_epoch_estimate() is None
    clock.now += 3
    report(oracle, trial, "tuner0", 0.6, 1)  # a 3 s trial epoch: 12 s a retraining epoch
    assert budget.retrain_epoch_estimate() == pytest.approx(12.0, abs=0.01)
    assert budget.reserve() == pytest.approx(5 * 12 + 30, abs=0.1)
    assert oracle.create_trial("tuner1").status == "RUNNING"  # 12 s used: the search may go on to 110 s
    clock.now += 99  # 111 s: past it (on the budget's share alone it could have gone on to 160 s)
    assert oracle.create_trial("tuner2").status == "STOPPED"


def test_epochs_slowed_by_the_other_workers_do_not_raise_the_estimate(tmp_path: Path) -> None:
    # Retraining runs alone; a trial's epochs share the cores. One undisturbed epoch of 3 s, two of
    # 6 s while another worker ran: the estimate follows the 3 s one, not the median.
    clock = Clock()
    oracle, budget = budgeted(tmp_path, clock, 200, share=0.2, scale=4.0)
    trial = oracle.create_trial("tuner0")
    for step, seconds in enumerate([9, 6, 3, 6]):
        clock.now += seconds
        report(oracle, trial, "tuner0", 0.5 + step / 10, step)
    assert budget.retrain_epoch_estimate() == pytest.approx(12.0, abs=0.01)


def test_the_start_is_kept_from_the_first_start(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    assert started_at(path, "a", clock=lambda: 100.0) == 100.0  # the first start keeps its time
    assert started_at(path, "a", clock=lambda: 500.0) == 100.0  # a restart finds it
    assert json.loads(path.read_text()) == {"started_at": 100.0, "outcome": "a"}
    path.write_text("{not json")
    assert started_at(path, "a", clock=lambda: 700.0) == 700.0  # unreadable: begins again, and says so
    path.write_text("[1]")
    assert started_at(path, "a", clock=lambda: 750.0) == 750.0


def test_a_config_that_changes_the_outcome_gets_a_budget_of_its_own(tmp_path: Path) -> None:
    """Raising max_trials on a finished experiment must run the new trials, not end at once."""
    path = tmp_path / "budget.json"
    started_at(path, "a", clock=lambda: 100.0)
    assert started_at(path, "b", clock=lambda: 5000.0) == 5000.0
    assert started_at(path, "b", clock=lambda: 6000.0) == 5000.0  # and keeps it from then on
    path.write_text(json.dumps({"started_at": 42.0}))  # written before the digest was kept
    assert started_at(path, "b", clock=lambda: 7000.0) == 42.0


@pytest.mark.parametrize(("text", "minutes"), [("60m", 60.0), ("1.5h", 90.0), ("90s", 1.5), ("4", 4.0)])
def test_durations(text: str, minutes: float) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize("text", ["", "m", "soon", "-5m", "0", "nanm", "infh"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_no_more_is_kept_than_the_most_epochs_retraining_may_run(tmp_path: Path) -> None:
    """A reserve beyond ``retrain.max_epochs`` would be left unused: the search has it instead."""
    budget = Budget(600, 0.0, 0.5, min_epochs=5, max_epochs=20, clock=lambda: 0.0)
    assert budget.reserve() == 300  # nothing measured: the share
    budget.epoch_costs = lambda: [5.0, 5.0]
    assert budget.reserve() == 20 * 5 + 30  # 40 s of the share would outlast 20 epochs
    budget.epoch_costs = lambda: [50.0]
    assert budget.reserve() == 300  # 20 epochs would not fit in the share: the share
    budget.epoch_costs = lambda: [100.0]
    assert budget.reserve() == 5 * 100 + 30  # the fewest epochs are kept whatever the share


def test_the_scale_counts_validation_at_its_cost() -> None:
    assert epoch_scale((1000, 0), (4000, 0)) == 4.0  # images alone
    assert epoch_scale((1000, 3000), (4000, 0)) == pytest.approx(4000 / (1000 + 3000 * VALIDATION_COST))
    assert epoch_scale((1000, 3000), (4000, 3000)) == pytest.approx((4000 + 1000) / (1000 + 1000))


def test_retraining_threads_speed_up_what_the_model_spreads_over_them(
    monkeypatch: pytest.MonkeyPatch, synthetic_dir: Path
) -> None:
    """A conv family's trial epoch on 1 thread of 2 predicts a faster retraining epoch on both; an
    MLP's, or a model that declares nothing (a user's), gets no credit, nor do equal threads."""
    from fmtune import data, devices
    from fmtune.config import ExperimentConfig
    from fmtune.models import families
    from fmtune.run import budget

    from ..conftest import SYNTHETIC

    monkeypatch.setattr(devices, "tensorflow_threads", lambda: 2)
    cfg = ExperimentConfig.model_validate({"search": {"train_samples": 300}})
    dataset = data.load(SYNTHETIC, synthetic_dir, val_fraction=0.1, seed=3, download=False)
    plain = budget.retrain_epoch_scale(cfg, dataset, object(), trial_threads=1)
    assert budget.retrain_epoch_scale(cfg, dataset, families.MLP(), trial_threads=1) == plain
    assert budget.retrain_epoch_scale(cfg, dataset, families.VGG(), trial_threads=2) == plain
    assert budget.retrain_epoch_scale(cfg, dataset, families.VGG(), trial_threads=0) == plain  # as many as here
    conv = budget.retrain_epoch_scale(cfg, dataset, families.VGG(), trial_threads=1)
    assert conv == pytest.approx(plain / budget.thread_speedup(families.VGG.parallel_share, 1, 2))
    assert 1.4 < plain / conv < 1.8  # the speed-up measured on standard (reports/retraining-pace.md)
