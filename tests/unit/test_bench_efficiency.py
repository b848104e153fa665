"""The efficiency bench's pure parts: its objective, the in-flight protocol, the epoch budget and
the verdicts, on fakes (the bench itself runs for minutes)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.bench import efficiency, multifidelity

BEST = {"x1": math.pi, "x2": 2.275, "learning_rate": 10**-2.5, "units": 256, "activation": "gelu"}


def test_the_objective_peaks_at_the_stated_optimum_and_only_full_fidelity_is_the_plain_objective() -> None:
    assert efficiency.objective(BEST) == pytest.approx(efficiency.OPTIMUM, abs=1e-6)
    assert efficiency.objective(BEST, multifidelity.fidelity(multifidelity.EPOCHS)) == efficiency.objective(BEST)
    assert efficiency.objective(BEST, multifidelity.fidelity(1)) != efficiency.objective(BEST)
    assert (multifidelity.fidelity(1), multifidelity.fidelity(multifidelity.EPOCHS)) == (0.0, 1.0)


class FakeSearcher:
    """Hands out trials whose x1 counts up; notes the order it is told in."""

    def __init__(self) -> None:
        self.asked, self.told = 0, []

    def ask(self) -> tuple[Any, dict[str, Any]]:
        self.asked += 1
        return self.asked, {**BEST, "x1": float(self.asked)}

    def tell(self, trial: Any, score: float) -> None:
        self.told.append(trial)


def test_with_parallel_workers_the_oldest_trial_ends_first_and_no_more_are_asked_than_trials() -> None:
    searcher = FakeSearcher()
    curve, _ = efficiency.run(searcher, parallel=4, trials=6)
    assert searcher.told == [1, 2, 3, 4, 5, 6] and searcher.asked == 6
    scores = [efficiency.objective({**BEST, "x1": float(i)}) for i in range(1, 7)]
    assert curve == [max(scores[: i + 1]) for i in range(6)]


class FakeStepper:
    """Stops every trial after its first epoch but every third, which runs to the end."""

    def __init__(self) -> None:
        self.trials, self.ended = 0, []

    def start(self) -> dict[str, Any]:
        self.trials += 1
        return BEST

    def report(self, epoch: int, value: float) -> bool:
        return self.trials % 3 == 1

    def end(self, value: float, finished: bool) -> None:
        self.ended.append(finished)


def test_the_budget_counts_every_epoch_run_and_only_full_length_trials_are_results() -> None:
    stepper = FakeStepper()
    curve, started, full = multifidelity.spend(stepper, budget=14)
    epochs = multifidelity.EPOCHS
    assert len(curve) == 14 and curve[epochs - 2] == -math.inf and curve[epochs - 1] == efficiency.objective(BEST)
    # 9 epochs, then 1 + 1, then 3 of the next full-length trial when the budget runs out
    assert (started, full) == (4, 1) and stepper.ended == [True, False, False, False]


def test_a_verdict_counts_seeds_either_way_and_names_the_checkpoints_lost() -> None:
    ours = {"regret_after_1": 1.0, "regret_after_1_per_seed": [0.5, 1.0, 1.5], "regret_after_2": 0.6}
    theirs = {"regret_after_1": 1.1, "regret_after_1_per_seed": [1.0, 1.0, 1.3], "regret_after_2": 0.5}
    ours["regret_after_2_per_seed"] = theirs["regret_after_2_per_seed"] = [0.5, 0.5, 0.5]
    v = efficiency.verdict(ours, theirs, (1, 2))
    assert not v["met"] and v["worse_at"] == [2]
    assert (v["seeds_better"]["1"], v["seeds_no_worse"]["1"], v["seeds_worse"]["1"]) == (1, 2, 1)


def test_optuna_searches_the_same_space() -> None:
    optuna = pytest.importorskip("optuna")
    values = efficiency.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())
    hp = efficiency.space()
    assert set(values) == {p.name for p in hp.space}
    assert values["units"] % 32 == 0 and values["activation"] in ("relu", "tanh", "gelu")
    assert 1e-4 <= values["learning_rate"] <= 1e-1 and -5 <= values["x1"] <= 10


def test_optuna_can_start_from_the_very_points_fmtunes_searches_draw() -> None:
    stepper = multifidelity.FmtuneAsha("random", seed=3)
    drawn = []
    for _ in range(4):
        drawn.append(dict(stepper.start()))
        stepper.report(1, 0.0)
        stepper.end(0.0, finished=False)
    assert efficiency.random_points(3, 4) == drawn


def test_optuna_can_start_from_the_very_points_fmtunes_bayesian_search_starts_from() -> None:
    searcher = efficiency.OracleSearcher(efficiency.fmtune_oracle(3))
    handed = []
    for _ in range(4):
        asked = searcher.ask()
        assert asked is not None
        handed.append(dict(asked[1]))
        searcher.tell(asked[0], 0.0)
    start = efficiency.fmtune_start(3, 4)
    assert handed == start and start[0] == efficiency.fill(efficiency.space())
