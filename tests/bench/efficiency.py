"""Sample efficiency: fmtune's Bayesian oracle against vanilla Keras Tuner's and Optuna's TPE on a
synthetic objective with a known optimum, averaged over seeds; then, with early stopping, fmtune's
ASHA against Optuna's HyperbandPruner on a multi-fidelity version of it (``tests.bench.multifidelity``).

The objective has the shape of a real search: two continuous parameters on Branin's function, a
log-scaled learning rate, a stepped integer and a categorical choice; its maximum is -0.397887.
Every searcher runs in-process with the same space, seed and number of random initial points. One
worker runs trials one after another; with parallel workers, that many trials are in flight and
the oldest ends first (Optuna: ask that many, then tell the oldest and ask again). Reported:
regret (optimum minus best so far) after N trials.

Run with `make bench` (python -m tests.bench.efficiency). Writes reports/efficiency.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import keras_tuner as kt

from fmtune.tuning.centre import fill

COMMAND = "make bench  (python -m tests.bench.efficiency)"
OPTIMUM = -0.397887
TRIALS = 30
CHECKPOINTS = (15, 20, 25, 30)
SEEDS = tuple(range(1, 17))
# Why Optuna's GPSampler has no row (checked with Optuna 4.9: its first model-based trial fails).
GP_SAMPLER = "it needs torch (ModuleNotFoundError at its first model-based trial), which is not installed here"


def space() -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.Float("x1", -5.0, 10.0)
    hp.Float("x2", 0.0, 15.0)
    hp.Float("learning_rate", 1e-4, 1e-1, sampling="log")
    hp.Int("units", 32, 512, step=32)
    hp.Choice("activation", ["relu", "tanh", "gelu"])
    return hp


# Keras Tuner's default for its Bayesian oracle (and fmtune's): three random trials per hyperparameter.
INITIAL_POINTS = 3 * len(space().space)


def branin(x1: float, x2: float, fidelity: float = 1.0) -> float:
    """Branin's function at full fidelity (1); below it, its b, c and t coefficients drift as in
    Kandasamy et al.'s multi-fidelity Branin (see ``tests.bench.multifidelity``)."""
    gap = 1.0 - fidelity
    b = 5.1 / (4 * math.pi**2) - 0.01 * gap
    c = 5 / math.pi - 0.1 * gap
    t = 1 / (8 * math.pi) + 0.005 * gap
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def objective(values: dict[str, Any], fidelity: float = 1.0) -> float:
    """What a trial scores (higher is better); ``fidelity`` below 1 only moves the Branin part."""
    lr_penalty = 2 * (math.log10(values["learning_rate"]) + 2.5) ** 2
    units_penalty = 2 * ((values["units"] - 256) / 256) ** 2
    activation_penalty = 0.0 if values["activation"] == "gelu" else 1.0
    return -branin(values["x1"], values["x2"], fidelity) - lr_penalty - units_penalty - activation_penalty


def vanilla(seed: int) -> kt.Oracle:
    return kt.oracles.BayesianOptimizationOracle(
        objective=kt.Objective("score", "max"), max_trials=TRIALS, hyperparameters=space(), seed=seed
    )


def fmtune_oracle(seed: int) -> kt.Oracle:
    from fmtune.tuning.bayesian import FmtuneBayesianOracle

    return FmtuneBayesianOracle(
        objective=kt.Objective("score", "max"), max_trials=TRIALS, hyperparameters=space(), seed=seed
    )


def in_scratch(oracle: kt.Oracle) -> kt.Oracle:
    """The oracle, quiet, with its files in a fresh temporary directory."""
    oracle.verbose = 0
    # Keras Tuner's own tuner calls this private method; fmtune's oracles also offer it as set_project_dir.
    oracle._set_project_dir(tempfile.mkdtemp(prefix="fmtune-efficiency-"), "p")
    return oracle


def suggest(trial: Any) -> dict[str, Any]:
    """An Optuna trial's values over ``space()``, read from it so both libraries search the same space."""
    values: dict[str, Any] = {}
    for hp in space().space:
        if isinstance(hp, kt.engine.hyperparameters.Float):
            values[hp.name] = trial.suggest_float(hp.name, hp.min_value, hp.max_value, log=hp.sampling == "log")
        elif isinstance(hp, kt.engine.hyperparameters.Int):
            values[hp.name] = trial.suggest_int(hp.name, hp.min_value, hp.max_value, step=hp.step)
        else:
            values[hp.name] = trial.suggest_categorical(hp.name, hp.values)
    return values


def study(sampler: Any, pruner: Any = None, name: str | None = None, start: Sequence[dict[str, Any]] = ()) -> Any:
    """A quiet Optuna study that maximises (named, because HyperbandPruner picks brackets by name),
    whose first trials are ``start``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    created = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, study_name=name)
    for values in start:
        created.enqueue_trial(values)
    return created


def random_points(seed: int, n: int) -> list[dict[str, Any]]:
    """The first ``n`` random trials Keras Tuner's oracles hand out for ``seed`` (its Bayesian oracle's
    random start, fmtune's, and fmtune's random search all draw these), for Optuna to start from, so
    that luck in the random draws counts for neither side."""
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "max"), max_trials=n, hyperparameters=space(), seed=seed
    )
    in_scratch(oracle)
    return [oracle.create_trial(f"w{i}").hyperparameters.values for i in range(n)]


def fmtune_start(seed: int, n: int) -> list[dict[str, Any]]:
    """The first ``n`` trials fmtune's Bayesian oracle hands out for ``seed``: the centre of the
    space, then Keras Tuner's first ``n - 1`` random draws."""
    return [fill(space()), *random_points(seed, n - 1)]


def tpe(seed: int) -> Any:
    """Optuna's TPE with its defaults, but as many random trials first as the other searchers."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=INITIAL_POINTS)


class Searcher(Protocol):
    def ask(self) -> tuple[Any, dict[str, Any]] | None:
        """A new trial and its values; None when there is none to give now."""

    def tell(self, trial: Any, score: float) -> None: ...


class OracleSearcher:
    """A Keras Tuner oracle asked as workers ask it: each trial by a new worker."""

    def __init__(self, oracle: kt.Oracle):
        self.oracle, self.workers = in_scratch(oracle), 0

    def ask(self) -> tuple[Any, dict[str, Any]] | None:
        trial = self.oracle.create_trial(f"w{self.workers}")
        if trial.status != "RUNNING":
            return None
        self.workers += 1
        return trial, trial.hyperparameters.values

    def tell(self, trial: Any, score: float) -> None:
        self.oracle.update_trial(trial.trial_id, {"score": score})
        trial.status = "COMPLETED"
        self.oracle.end_trial(trial)


class StudySearcher:
    """An Optuna study driven with ask() and tell()."""

    def __init__(self, sampler: Any, start: Sequence[dict[str, Any]] = ()):
        self.study = study(sampler, start=start)

    def ask(self) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask()
        return trial, suggest(trial)

    def tell(self, trial: Any, score: float) -> None:
        self.study.tell(trial, score)


SEARCHERS: dict[str, Callable[[int], Searcher]] = {
    "keras-tuner": lambda seed: OracleSearcher(vanilla(seed)),
    "fmtune": lambda seed: OracleSearcher(fmtune_oracle(seed)),
    "optuna-tpe": lambda seed: StudySearcher(tpe(seed)),
    "optuna-tpe, same start": lambda seed: StudySearcher(tpe(seed), fmtune_start(seed, INITIAL_POINTS)),
}
RIVALS = ("keras-tuner", "optuna-tpe", "optuna-tpe, same start")  # what fmtune is compared with


def run(searcher: Searcher, parallel: int, trials: int = TRIALS) -> tuple[list[float], float]:
    """Best score after each trial, and seconds spent asking for trials."""
    in_flight: list[tuple[Any, dict[str, Any]]] = []
    best, curve, asking, asked = -math.inf, [], 0.0, 0
    while len(curve) < trials:
        while len(in_flight) < parallel and asked < trials:
            started = time.perf_counter()
            new = searcher.ask()
            asking += time.perf_counter() - started
            if new is None:
                break
            in_flight.append(new)
            asked += 1
        trial, values = in_flight.pop(0)
        score = objective(values)
        searcher.tell(trial, score)
        best = max(best, score)
        curve.append(best)
    return curve, asking


def regret_row(curves: list[list[float]], checkpoints: Sequence[int]) -> dict[str, Any]:
    """Mean regret at each checkpoint (an index into the curves, from 1), and per seed."""
    regrets = {n: [OPTIMUM - c[n - 1] for c in curves] for n in checkpoints}
    return {
        "seeds": list(SEEDS),
        **{f"regret_after_{n}": statistics.fmean(r) for n, r in regrets.items()},
        **{f"regret_after_{n}_per_seed": r for n, r in regrets.items()},
    }


def verdict(ours: dict[str, Any], theirs: dict[str, Any], checkpoints: Sequence[int]) -> dict[str, Any]:
    """Is our mean regret no worse at every checkpoint; per checkpoint, the seeds where ours is no
    worse, better and worse; and the checkpoints where our mean is worse."""

    def seeds(better: Callable[[float, float], bool], n: int) -> int:
        pairs = zip(ours[f"regret_after_{n}_per_seed"], theirs[f"regret_after_{n}_per_seed"], strict=True)
        return sum(bool(better(a, b)) for a, b in pairs)

    worse_at = [n for n in checkpoints if ours[f"regret_after_{n}"] > theirs[f"regret_after_{n}"]]
    return {
        "met": not worse_at,
        "worse_at": worse_at,
        "seeds_no_worse": {str(n): seeds(lambda a, b: a <= b, n) for n in checkpoints},
        "seeds_better": {str(n): seeds(lambda a, b: a < b, n) for n in checkpoints},
        "seeds_worse": {str(n): seeds(lambda a, b: a > b, n) for n in checkpoints},
    }


def comparisons(rows: list[dict[str, Any]], rival: str) -> list[dict[str, Any]]:
    """Per worker count: fmtune's ``verdict`` against ``rival``."""
    verdicts = []
    for parallel in sorted({r["parallel_workers"] for r in rows}):
        ours, theirs = (
            next(r for r in rows if r["parallel_workers"] == parallel and r["oracle"] == name)
            for name in ("fmtune", rival)
        )
        verdicts.append({"rival": rival, "parallel_workers": parallel, **verdict(ours, theirs, CHECKPOINTS)})
    return verdicts


def verdict_line(label: str, v: dict[str, Any], checkpoints: Sequence[int], unit: str = "") -> str:
    """One verdict as a list item: met or not, and per checkpoint the seeds ours is no worse on."""
    seeds = ", ".join(f"after {n}{unit}: {v['seeds_no_worse'][str(n)]}/{len(SEEDS)}" for n in checkpoints)
    return f"- {label}: {'met' if v['met'] else 'NOT met'} ({seeds})."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    from tests.bench import multifidelity  # it builds on this module's objective

    began = time.perf_counter()
    rows = []
    for parallel in (1, 4):
        for name, make in SEARCHERS.items():
            curves, seconds = [], []
            for seed in SEEDS:
                curve, spent = run(make(seed), parallel)
                curves.append(curve)
                seconds.append(spent)
            row = {
                "oracle": name,
                "parallel_workers": parallel,
                **regret_row(curves, CHECKPOINTS),
                "create_seconds_per_trial": statistics.fmean(seconds) / TRIALS,
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("per_seed")}), flush=True)
    verdicts = [v for rival in RIVALS for v in comparisons(rows, rival)]
    budget = multifidelity.bench()
    minutes = (time.perf_counter() - began) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": COMMAND,
        "minutes": minutes,
        "optimum": OPTIMUM,
        "trials": TRIALS,
        "initial_points": INITIAL_POINTS,
        "rows": rows,
        "comparison": verdicts,
        "optuna_gp_sampler": GP_SAMPLER,
        "multifidelity": budget,
    }
    (args.out / "efficiency.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Sample efficiency",
        "",
        f"Command: `{COMMAND}` ({minutes:.1f} min in all on this machine). Synthetic objective with a known "
        f"optimum ({OPTIMUM}): Branin on two floats, a log-scaled learning rate, a stepped integer, a categorical; "
        f"{TRIALS} trials, mean regret (optimum minus best so far; lower is better) over {len(SEEDS)} seeds "
        f"({SEEDS[0]}-{SEEDS[-1]}). Every searcher starts with {INITIAL_POINTS} initial trials, random but for "
        "fmtune's first, the centre of the space.",
        "",
        "Rows: `keras-tuner` is Keras Tuner's BayesianOptimizationOracle with its defaults (a GP, upper confidence "
        "bound); `fmtune` is fmtune's Bayesian oracle (a GP, expected improvement), whose first trial is the "
        f"centre of the space and the next {INITIAL_POINTS - 1} Keras Tuner's first random draws; `optuna-tpe` is "
        "Optuna's TPESampler with its defaults but `n_startup_trials` set to match, asked and told through "
        f"`study.ask()`/`study.tell()`: its random points are its own, so after {INITIAL_POINTS} trials it differs "
        "from the others by the luck of the draw alone; `optuna-tpe, same start` starts instead from fmtune's "
        "initial points (`study.enqueue_trial`), so it differs from `fmtune` only by what the model suggests. With 4 "
        "workers, 4 trials are in flight and the oldest ends first; Optuna's TPE, by default (`constant_liar` off), "
        "ignores the trials in flight. "
        "Create-trial time is the time to ask for one trial (Optuna: `ask()` and the `suggest_*` calls). "
        f"No row for Optuna's GPSampler: {GP_SAMPLER}.",
        "",
        "| searcher | parallel workers | "
        + " | ".join(f"regret after {n}" for n in CHECKPOINTS)
        + " | create-trial time per trial (s) |",
        "|---|---|" + "---|" * len(CHECKPOINTS) + "---|",
    ]
    for r in rows:
        cells = " | ".join(f"{r[f'regret_after_{n}']:.3f}" for n in CHECKPOINTS)
        lines.append(f"| {r['oracle']} | {r['parallel_workers']} | {cells} | {r['create_seconds_per_trial']:.3f} |")
    for rival in RIVALS:
        lines += [
            "",
            f"fmtune no worse than `{rival}` (mean regret), and seeds where fmtune's best is at least as good:",
        ]
        lines += [
            verdict_line(f"{v['parallel_workers']} worker(s)", v, CHECKPOINTS) for v in verdicts if v["rival"] == rival
        ]
    losses = [
        f"against {v['rival']} with {v['parallel_workers']} worker(s) after {', '.join(map(str, v['worse_at']))} trials"
        for v in verdicts
        if v["worse_at"]
    ]
    lines += ["", f"Where fmtune's mean regret is worse: {'; '.join(losses) if losses else 'nowhere in this run'}."]
    lines += ["", *multifidelity.markdown(budget)]
    text = "\n".join(lines) + "\n"
    (args.out / "efficiency.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
