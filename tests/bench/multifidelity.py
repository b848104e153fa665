"""Budget efficiency with early stopping: fmtune's ASHA against Optuna's HyperbandPruner, as regret
against the epochs spent. Part of the efficiency bench (python -m tests.bench.efficiency).

The objective is the efficiency bench's, with a fidelity: after epoch b of B, a trial scores
``efficiency.objective(values, z)`` at z = (b - 1) / (B - 1), whose Branin part is Kandasamy et al.'s
multi-fidelity Branin ("Multi-fidelity Bayesian Optimisation with Continuous Approximations",
ICML 2017, arXiv:1703.06240, appendix), one fidelity for its three coefficients:

    b(z) = 5.1 / (4 pi^2) - 0.01 (1 - z),   c(z) = 5 / pi - 0.1 (1 - z),   t(z) = 1 / (8 pi) + 0.005 (1 - z)

(the constants of Kandasamy's own implementation in Dragonfly, examples/synthetic/branin). No noise.
At the last epoch (z = 1) it is the single-fidelity objective, so the optimum is the same.

Both sides use the quick preset's settings (grace 1 epoch, reduction factor 3, 9 epochs), the same
seeds, one worker and the same budget of epochs. A trial that runs all 9 epochs is a result; the
regret after N epochs is the optimum minus the best such result so far.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from fmtune import config
from fmtune.config import FaultTolerance, SearchConfig
from fmtune.tuning.algorithms import make_oracle
from fmtune.tuning.stopping.asha import rungs
from tests.bench.efficiency import (
    INITIAL_POINTS,
    SEEDS,
    fmtune_start,
    in_scratch,
    objective,
    random_points,
    regret_row,
    space,
    study,
    suggest,
    tpe,
    verdict,
    verdict_line,
)

BUDGET = 200
CHECKPOINTS = (50, 100, 150, 200)
WORKER = "w0"


def preset_search(algorithm: str) -> SearchConfig:
    """The quick preset's search (ASHA on, 9 epochs), with ``algorithm``, room for as many trials as
    the budget has epochs, and this bench's objective."""
    raw = config.preset("quick")["search"]
    return SearchConfig.model_validate(
        {**raw, "algorithm": algorithm, "max_trials": BUDGET, "objective": {"name": "score", "direction": "max"}}
    )


SEARCH = preset_search("bayesian")
EPOCHS, ETA, GRACE = SEARCH.epochs, SEARCH.asha.reduction_factor, SEARCH.asha.grace_epochs


def fidelity(epoch: int) -> float:
    """Kandasamy's z after ``epoch`` (from 1): 0 after the first, 1 after the last."""
    return (epoch - 1) / (EPOCHS - 1)


class Stepper(Protocol):
    def start(self) -> dict[str, Any]:
        """A new trial's values."""

    def report(self, epoch: int, value: float) -> bool:
        """The trial's score after ``epoch`` (from 1); whether it goes on."""

    def end(self, value: float, finished: bool) -> None:
        """The trial is over: it ran every epoch, or was stopped (or the budget ran out)."""


class FmtuneAsha:
    """fmtune's oracle as ``make_oracle`` builds it from the preset, driven as its worker drives it:
    a report per epoch, whose answer says whether the trial goes on (no clock involved)."""

    def __init__(self, algorithm: str, seed: int):
        oracle = make_oracle(preset_search(algorithm), FaultTolerance(), seed, clock=lambda: 0.0)
        self.oracle = in_scratch(oracle)
        self.oracle.update_space(space())
        self.trial: Any = None

    def start(self) -> dict[str, Any]:
        self.trial = self.oracle.create_trial(WORKER)
        return self.trial.hyperparameters.values

    def report(self, epoch: int, value: float) -> bool:
        answer = self.oracle.update_trial_from(WORKER, self.trial.trial_id, {"score": value}, step=epoch - 1)
        return answer.status != "STOPPED"

    def end(self, value: float, finished: bool) -> None:
        self.trial.status = "COMPLETED"
        self.oracle.end_trial_from(WORKER, self.trial)


class OptunaHyperband:
    """An Optuna study with HyperbandPruner on the same settings, driven as Optuna's docs do: report
    each epoch (step = epochs run) and ask should_prune(), except after the last epoch."""

    def __init__(self, sampler: Any, seed: int, start: Sequence[dict[str, Any]] = ()):
        import optuna

        pruner = optuna.pruners.HyperbandPruner(min_resource=GRACE, max_resource=EPOCHS, reduction_factor=ETA)
        self.study = study(sampler, pruner, name=f"multifidelity-{seed}", start=start)
        self.trial: Any = None

    def start(self) -> dict[str, Any]:
        self.trial = self.study.ask()
        return suggest(self.trial)

    def report(self, epoch: int, value: float) -> bool:
        self.trial.report(value, epoch)
        return epoch == EPOCHS or not self.trial.should_prune()

    def end(self, value: float, finished: bool) -> None:
        from optuna.trial import TrialState

        if finished:
            self.study.tell(self.trial, value)
        else:
            self.study.tell(self.trial, state=TrialState.PRUNED)


def random_sampler(seed: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


STEPPERS: dict[str, Callable[[int], Stepper]] = {
    "fmtune bayesian + ASHA": lambda seed: FmtuneAsha("bayesian", seed),
    "fmtune random + ASHA": lambda seed: FmtuneAsha("random", seed),
    "optuna TPE + Hyperband": lambda seed: OptunaHyperband(tpe(seed), seed),
    "optuna TPE + Hyperband, same start": lambda seed: OptunaHyperband(
        tpe(seed), seed, fmtune_start(seed, INITIAL_POINTS)
    ),
    "optuna random + Hyperband": lambda seed: OptunaHyperband(random_sampler(seed), seed),
    # Every trial one of fmtune's random search's draws, in its order: only the stopping rules differ.
    "optuna random + Hyperband, same draws": lambda seed: OptunaHyperband(
        random_sampler(seed), seed, random_points(seed, BUDGET)
    ),
}
# What each verdict compares: fmtune's Bayesian search with ASHA against Optuna's TPE with Hyperband,
# then the stopping rules alone (random search), each as asked and from the same points.
PAIRS = (
    ("fmtune bayesian + ASHA", "optuna TPE + Hyperband"),
    ("fmtune bayesian + ASHA", "optuna TPE + Hyperband, same start"),
    ("fmtune random + ASHA", "optuna random + Hyperband"),
    ("fmtune random + ASHA", "optuna random + Hyperband, same draws"),
)


def spend(stepper: Stepper, budget: int = BUDGET) -> tuple[list[float], int, int]:
    """Best full-length result after each epoch spent (-inf before the first), trials started, and
    trials that ran every epoch."""
    curve: list[float] = []
    best, started, full = -math.inf, 0, 0
    while len(curve) < budget:
        values = stepper.start()
        started += 1
        for epoch in range(1, EPOCHS + 1):
            value = objective(values, fidelity(epoch))
            if epoch == EPOCHS:
                best, full = max(best, value), full + 1
            curve.append(best)
            goes_on = stepper.report(epoch, value)
            if epoch == EPOCHS or not goes_on or len(curve) >= budget:
                break
        stepper.end(value, finished=epoch == EPOCHS)
    return curve, started, full


def bench() -> dict[str, Any]:
    """Every stepper on every seed; rows of mean regret by epochs spent, and the verdicts of ``PAIRS``."""
    rows = []
    for name, make in STEPPERS.items():
        runs = [spend(make(seed)) for seed in SEEDS]
        curves = [c for c, _, _ in runs]
        if any(math.isinf(c[CHECKPOINTS[0] - 1]) for c in curves):
            raise RuntimeError(f"{name}: no trial ran all {EPOCHS} epochs within {CHECKPOINTS[0]} epochs")
        row = {
            "searcher": name,
            **regret_row(curves, CHECKPOINTS),
            "trials_started": statistics.fmean(s for _, s, _ in runs),
            "trials_full_length": statistics.fmean(f for _, _, f in runs),
        }
        rows.append(row)
        print({k: v for k, v in row.items() if not k.endswith("per_seed")}, flush=True)
    by_name = {r["searcher"]: r for r in rows}
    verdicts = [{"ours": a, "rival": b, **verdict(by_name[a], by_name[b], CHECKPOINTS)} for a, b in PAIRS]
    settings = {
        "budget_epochs": BUDGET,
        "max_epochs": EPOCHS,
        "reduction_factor": ETA,
        "grace_epochs": GRACE,
        "asha_rungs": rungs(GRACE, ETA, EPOCHS),
        "hyperband_brackets": math.floor(math.log(EPOCHS / GRACE, ETA)) + 1,  # Optuna's own formula
    }
    return {**settings, "checkpoints_epochs": list(CHECKPOINTS), "rows": rows, "comparison": verdicts}


def markdown(result: dict[str, Any]) -> list[str]:
    """The section's lines in efficiency.md."""
    epochs, rungs = result["max_epochs"], " and ".join(map(str, result["asha_rungs"]))
    lines = [
        f"**With early stopping, by epochs spent.** The same objective with a fidelity: after epoch b of {epochs} a "
        "trial scores the objective with its Branin part replaced by Kandasamy et al.'s multi-fidelity Branin "
        f"(ICML 2017, arXiv:1703.06240) at z = (b - 1) / {epochs - 1}: b(z) = 5.1/(4 pi^2) - 0.01 (1 - z), "
        "c(z) = 5/pi - 0.1 (1 - z), t(z) = 1/(8 pi) + 0.005 (1 - z) (the constants of Kandasamy's Dragonfly "
        f"code), no noise; after epoch {epochs} it is the objective above. The quick preset's settings on both "
        f"sides: grace (min resource) {result['grace_epochs']} epoch, reduction factor {result['reduction_factor']}, "
        f"{epochs} epochs; one worker; {result['budget_epochs']} epochs in all; seeds as above. Regret: optimum minus "
        f"the best trial that ran all {epochs} epochs so far.",
        "",
        "Rows: `fmtune bayesian + ASHA` is `make_oracle` on the quick preset's search: fmtune's Bayesian oracle "
        f"({INITIAL_POINTS} initial trials first, the centre of the space and then random ones; then it learns "
        "from every trial's first-epoch score) with its ASHA "
        f"rule, which judges trials after epochs {rungs}, driven through `update_trial_from` as a worker drives it; "
        "`fmtune random + ASHA` is the same with random search. `optuna TPE + Hyperband` is Optuna's "
        f"HyperbandPruner ({result['hyperband_brackets']} brackets: the first judges after epochs {rungs} as ASHA "
        "does, the others later or never) with TPESampler (its defaults, "
        f"{INITIAL_POINTS} random trials first, counted per bracket, since under Hyperband TPE sees only its "
        "bracket's trials); `optuna random + Hyperband` has RandomSampler instead. Optuna's random draws are its "
        "own, so these rows also differ from fmtune's by the luck of the draw. `, same start` rows start from the "
        f"{INITIAL_POINTS} points fmtune's Bayesian oracle starts from (`study.enqueue_trial`; TPE still draws "
        "its own random trials per bracket after them); in `optuna random + Hyperband, same draws` the n-th trial "
        "is the n-th that fmtune's random search hands out, so against `fmtune random + ASHA` only the stopping "
        "rules differ.",
        "",
        "| searcher | "
        + " | ".join(f"regret after {n} epochs" for n in result["checkpoints_epochs"])
        + " | trials started | trials run to the end |",
        "|---|" + "---|" * len(result["checkpoints_epochs"]) + "---|---|",
    ]
    for r in result["rows"]:
        cells = " | ".join(f"{r[f'regret_after_{n}']:.3f}" for n in result["checkpoints_epochs"])
        lines.append(f"| {r['searcher']} | {cells} | {r['trials_started']:.1f} | {r['trials_full_length']:.1f} |")
    checkpoints = result["checkpoints_epochs"]
    for v in result["comparison"]:
        wins = ", ".join(
            f"after {n}: {v['seeds_better'][str(n)]} / {v['seeds_worse'][str(n)]}"
            f" / {len(SEEDS) - v['seeds_better'][str(n)] - v['seeds_worse'][str(n)]}"
            for n in checkpoints
        )
        lines += [
            "",
            f"`{v['ours']}` no worse than `{v['rival']}` (mean regret), and seeds where its best is at least as good:",
            verdict_line("1 worker", v, checkpoints, " epochs"),
            f"- seeds won by fmtune / by Optuna / tied: {wins}.",
        ]
    losses = [
        f"{v['ours']} against {v['rival']} after {', '.join(map(str, v['worse_at']))} epochs"
        for v in result["comparison"]
        if v["worse_at"]
    ]
    lines += ["", f"Where fmtune's mean regret is worse: {'; '.join(losses) if losses else 'nowhere in this run'}."]
    return lines
