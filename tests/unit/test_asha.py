"""ASHA as a stopping rule, and inside the oracle."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from fmtune.tuning.stopping import Asha, Cohort, Decision
from fmtune.tuning.stopping.asha import cutoff

from .conftest import oracle_for


def report(oracle: Any, trial: Any, caller: str, value: float, step: int) -> str:
    return str(oracle.update_trial_from(caller, trial.trial_id, {"val_accuracy": value}, step=step).status)


def end(oracle: Any, trial: Any, caller: str) -> None:
    trial.status = "COMPLETED"
    oracle.end_trial_from(caller, trial)


def test_asha_stops_below_the_cutoff_at_each_rung_and_lets_the_rest_go_on(tmp_path: Path) -> None:
    settings = ["search.max_trials=50", "search.asha.enabled=true", "search.asha.reduction_factor=2", "search.epochs=4"]
    oracle = oracle_for(tmp_path, *settings)
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
    assert [oracle.book.attempt(t.trial_id).stopped_by for t in trials] == [None, "Asha", "Asha"]
    assert [oracle.book.freeze(oracle.book.copy(oracle.trials[t.trial_id])).rung for t in trials] == [1, 0, 1]


def test_asha_decisions_match_the_rule_for_any_arrival_order() -> None:
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
