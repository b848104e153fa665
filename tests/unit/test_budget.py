"""The time budget and ASHA inside the oracle, without gRPC or training: a clock moved by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras_tuner as kt
import pytest

from fmtune import config
from fmtune.run.budget import Budget, parse_duration
from fmtune.tuning.algorithms import make_oracle
from fmtune.tuning.stopping import Asha, Cohort, Decision
from fmtune.tuning.stopping.asha import cutoff

from ..conftest import CLASSIC


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def oracle_for(tmp_path: Path, *assignments: str) -> Any:
    cfg = config.load(
        "quick", None, [*CLASSIC, "search.algorithm=random", "search.max_trials=50", *assignments], environ={}
    )
    oracle = make_oracle(cfg)
    oracle.set_project_dir(tmp_path, "search")
    hp = kt.HyperParameters()
    hp.Int("units", 8, 64)
    oracle.update_space(hp)
    return oracle


def report(oracle: Any, trial: Any, caller: str, value: float, step: int) -> str:
    return str(oracle.update_trial_from(caller, trial.trial_id, {"val_accuracy": value}, step=step).status)


def end(oracle: Any, trial: Any, caller: str) -> str:
    trial.status = "COMPLETED"
    oracle.end_trial_from(caller, trial)
    return str(oracle.trials[trial.trial_id].status)


def test_the_search_closes_when_only_the_reserve_is_left(tmp_path: Path) -> None:
    clock = Clock()
    oracle = oracle_for(tmp_path)
    oracle.clock = clock
    oracle.budget = Budget(100, started_at=clock.now, retrain_share=0.4, min_epochs=5, clock=clock)
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
    assert oracle.record[first.trial_id]["stopped_by"] == "budget"
    assert report(oracle, second, "tuner1", 0.6, 0) == "STOPPED" and end(oracle, second, "tuner1") == "COMPLETED"
    assert oracle.search_over()
    assert oracle.get_best_trials(1)[0].trial_id == first.trial_id


def test_the_reserve_grows_with_what_retraining_costs(tmp_path: Path) -> None:
    clock = Clock()
    oracle = oracle_for(tmp_path)
    oracle.clock = clock
    oracle.budget = Budget(200, started_at=clock.now, retrain_share=0.2, min_epochs=5, clock=clock)
    oracle.epoch_scale = 4.0  # retraining's epochs hold four times a trial epoch's images
    trial = oracle.create_trial("tuner0")
    clock.now += 9
    report(oracle, trial, "tuner0", 0.5, 0)  # the first epoch also builds the model: not counted
    assert oracle.retrain_epoch_estimate() is None
    clock.now += 3
    report(oracle, trial, "tuner0", 0.6, 1)  # a 3 s trial epoch: 12 s a retraining epoch
    assert oracle.retrain_epoch_estimate() == pytest.approx(12.0, abs=0.01)
    assert oracle.budget.reserve(oracle.retrain_epoch_estimate()) == pytest.approx(5 * 12 + 30, abs=0.1)
    assert oracle.create_trial("tuner1").status == "RUNNING"  # 12 s used: the search may go on to 110 s
    clock.now += 99  # 111 s: past it (on the budget's share alone it could have gone on to 160 s)
    assert oracle.create_trial("tuner2").status == "STOPPED"


def test_asha_stops_below_the_cutoff_at_each_rung_and_lets_the_rest_go_on(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path, "search.asha.enabled=true", "search.asha.reduction_factor=2", "search.epochs=4")
    assert isinstance(oracle.stopping, Asha) and oracle.stopping.milestones == {1, 2}
    trials = [oracle.create_trial(f"tuner{i}") for i in range(3)]
    values = [0.6, 0.5, 0.7]
    decisions = [report(oracle, t, f"tuner{i}", v, 0) for i, (t, v) in enumerate(zip(trials, values, strict=True))]
    assert decisions == ["RUNNING", "STOPPED", "RUNNING"]  # the 2nd is below the first's 0.6; the 3rd above both
    assert report(oracle, trials[0], "tuner0", 0.8, 1) == "RUNNING"  # first at rung 2
    assert report(oracle, trials[2], "tuner2", 0.75, 1) == "STOPPED"  # below the median of [0.8]
    for i, trial in enumerate(trials):
        end(oracle, trial, f"tuner{i}")
    statuses = [oracle.trials[t.trial_id].status for t in trials]
    assert statuses == ["COMPLETED", "STOPPED", "STOPPED"]
    assert [oracle.record[t.trial_id].get("stopped_by") for t in trials] == [None, "Asha", "Asha"]


def test_asha_decisions_match_the_rule_for_any_arrival_order() -> None:
    import random

    rng = random.Random(0)
    rule = Asha(maximise=True, reduction_factor=3, grace_epochs=1, max_epochs=9)
    for _ in range(200):
        recorded: list[dict[int, float]] = []
        for _ in range(rng.randint(1, 12)):
            value = rng.random()
            threshold = cutoff([c[0] for c in recorded], 3, maximise=True)
            decision = rule.on_result({0: value}, 0, Cohort([], recorded))
            assert decision == (Decision.STOP if threshold is not None and value < threshold else Decision.CONTINUE)
            recorded.append({0: value})


@pytest.mark.parametrize(("text", "minutes"), [("60m", 60.0), ("1.5h", 90.0), ("90s", 1.5), ("4", 4.0)])
def test_durations(text: str, minutes: float) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize("text", ["", "m", "soon", "-5m", "0", "nanm", "infh"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
