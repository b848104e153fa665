"""Sample efficiency: fmtune's Bayesian oracle against vanilla Keras Tuner's on a synthetic objective
with a known optimum, averaged over seeds.

The objective has the shape of a real search: two continuous parameters on Branin's function, a
log-scaled learning rate, a stepped integer and a categorical choice; its maximum is -0.397887.
Both oracles run in-process with the same space, seed and number of random initial points. One
worker runs trials one after another; with parallel workers, that many trials are in flight and
the oldest ends first. Reported: regret (optimum minus best so far) after N trials.

Run with `make bench` (python -m tests.bench.efficiency). Writes reports/efficiency.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras_tuner as kt

COMMAND = "make bench  (python -m tests.bench.efficiency)"
OPTIMUM = -0.397887
TRIALS = 30
CHECKPOINTS = (15, 20, 25, 30)
SEEDS = tuple(range(1, 17))


def space() -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.Float("x1", -5.0, 10.0)
    hp.Float("x2", 0.0, 15.0)
    hp.Float("learning_rate", 1e-4, 1e-1, sampling="log")
    hp.Int("units", 32, 512, step=32)
    hp.Choice("activation", ["relu", "tanh", "gelu"])
    return hp


def objective(values: dict[str, Any]) -> float:
    x1, x2 = values["x1"], values["x2"]
    branin = (
        (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1)
        + 10
    )
    lr_penalty = 2 * (math.log10(values["learning_rate"]) + 2.5) ** 2
    units_penalty = 2 * ((values["units"] - 256) / 256) ** 2
    return -branin - lr_penalty - units_penalty - (0.0 if values["activation"] == "gelu" else 1.0)


def vanilla(seed: int) -> kt.Oracle:
    return kt.oracles.BayesianOptimizationOracle(
        objective=kt.Objective("score", "max"), max_trials=TRIALS, hyperparameters=space(), seed=seed
    )


def fmtune_oracle(seed: int) -> kt.Oracle:
    from fmtune.tuning.bayesian import FmtuneBayesianOracle

    return FmtuneBayesianOracle(
        objective=kt.Objective("score", "max"), max_trials=TRIALS, hyperparameters=space(), seed=seed
    )


def run(make: Callable[[int], kt.Oracle], seed: int, parallel: int) -> tuple[list[float], float]:
    """Best score after each trial, and seconds spent in create_trial."""
    oracle = make(seed)
    oracle.verbose = 0
    oracle.set_project_dir(tempfile.mkdtemp(prefix="fmtune-efficiency-"), "p")
    in_flight: list[Any] = []
    best, curve, creating = -math.inf, [], 0.0
    next_worker = 0
    while len(curve) < TRIALS:
        while len(in_flight) < parallel and len(oracle.trials) < TRIALS:
            started = time.perf_counter()
            trial = oracle.create_trial(f"w{next_worker}")
            creating += time.perf_counter() - started
            if trial.status != "RUNNING":
                break
            in_flight.append(trial)
            next_worker += 1
        trial = in_flight.pop(0)
        score = objective(trial.hyperparameters.values)
        oracle.update_trial(trial.trial_id, {"score": score})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        best = max(best, score)
        curve.append(best)
    return curve, creating


def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per worker count: is fmtune's mean regret no worse at every checkpoint, and on how many seeds."""
    verdicts = []
    for parallel in sorted({r["parallel_workers"] for r in rows}):
        ours, theirs = (
            next(r for r in rows if r["parallel_workers"] == parallel and r["oracle"] == name)
            for name in ("fmtune", "keras-tuner")
        )
        verdicts.append(
            {
                "parallel_workers": parallel,
                "met": all(ours[f"regret_after_{n}"] <= theirs[f"regret_after_{n}"] for n in CHECKPOINTS),
                "seeds_no_worse": {
                    str(n): sum(
                        bool(a <= b)
                        for a, b in zip(
                            ours[f"regret_after_{n}_per_seed"], theirs[f"regret_after_{n}_per_seed"], strict=True
                        )
                    )
                    for n in CHECKPOINTS
                },
            }
        )
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    rows = []
    for parallel in (1, 4):
        for name, make in (("keras-tuner", vanilla), ("fmtune", fmtune_oracle)):
            curves, seconds = [], []
            for seed in SEEDS:
                curve, spent = run(make, seed, parallel)
                curves.append(curve)
                seconds.append(spent)
            regrets = {n: [OPTIMUM - c[n - 1] for c in curves] for n in CHECKPOINTS}
            row = {
                "oracle": name,
                "parallel_workers": parallel,
                "seeds": list(SEEDS),
                **{f"regret_after_{n}": statistics.fmean(r) for n, r in regrets.items()},
                **{f"regret_after_{n}_per_seed": r for n, r in regrets.items()},
                "create_seconds_per_trial": statistics.fmean(seconds) / TRIALS,
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("per_seed")}), flush=True)
    verdicts = comparisons(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"command": COMMAND, "optimum": OPTIMUM, "trials": TRIALS, "rows": rows, "comparison": verdicts}
    (args.out / "efficiency.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Sample efficiency",
        "",
        f"Command: `{COMMAND}`. Synthetic objective with a known optimum ({OPTIMUM}): Branin on two "
        "floats, a log-scaled learning rate, a stepped integer, a categorical; Bayesian optimisation with "
        f"each oracle's defaults, {TRIALS} trials, mean regret (optimum minus best so far; lower is better) "
        f"over {len(SEEDS)} seeds ({SEEDS[0]}-{SEEDS[-1]}). Both oracles draw the same random initial points.",
        "",
        "| oracle | parallel workers | "
        + " | ".join(f"regret after {n}" for n in CHECKPOINTS)
        + " | create-trial time per trial (s) |",
        "|---|---|" + "---|" * len(CHECKPOINTS) + "---|",
    ]
    for r in rows:
        cells = " | ".join(f"{r[f'regret_after_{n}']:.3f}" for n in CHECKPOINTS)
        lines.append(f"| {r['oracle']} | {r['parallel_workers']} | {cells} | {r['create_seconds_per_trial']:.3f} |")
    lines += ["", "fmtune no worse than Keras Tuner (mean regret), and seeds where fmtune's best is at least as good:"]
    for v in verdicts:
        seeds = ", ".join(f"after {n}: {v['seeds_no_worse'][str(n)]}/{len(SEEDS)}" for n in CHECKPOINTS)
        lines.append(f"- {v['parallel_workers']} worker(s): {'met' if v['met'] else 'NOT met'} ({seeds}).")
    text = "\n".join(lines) + "\n"
    (args.out / "efficiency.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
