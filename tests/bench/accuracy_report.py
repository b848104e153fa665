"""The accuracy bench's report: from each run's results.json (and the baselines' and vanilla Keras
Tuner's records) to rows, medians and spreads, reports/accuracy.md and, through accuracy_plot,
reports/accuracy.png. Pure: it measures nothing (tests/bench/accuracy.py does)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fmtune.results import Results
from fmtune.tuning.stopping.asha import rungs
from tests.bench.host import cpu_model

COMMAND = "make bench  (python -m tests.bench.accuracy)"
TIMING_KEYS = ("startup", "search", "retrain", "export")
REPRODUCE_SECONDS = 300.0  # of training, per retraining of the reproducibility check
# What each run's row is summed up by: its median and spread over the runs.
SUMMARY_KEYS = (
    "wall_s",
    *(f"{k}_s" for k in TIMING_KEYS),
    "test_accuracy",
    "trials",
    "stopped_asha",
    "stopped_budget",
    "retrain_epochs",
)


class Preset(BaseModel):
    preset: str
    dataset: str
    target_accuracy: float  # in each run
    median_target: float | None = None  # and over the runs, their median
    budget_minutes: float
    runs: int  # the targets hold over this many runs, each with its own seed
    baseline_runs: int  # of each baseline, with the seeds of the last runs (--baselines)
    shorter_budgets: tuple[float, ...] = ()  # minutes: one run each, what a shorter budget buys (--shorter)
    references: str


PRESETS = {
    p.preset: p
    for p in (
        Preset(
            preset="quick",
            dataset="fashion_mnist",
            target_accuracy=0.905,
            budget_minutes=4,
            runs=3,
            baseline_runs=3,
            references="seed MLP 0.8798; Zalando best MLP 0.8833",
        ),
        Preset(
            preset="standard",
            dataset="fashion_mnist",
            target_accuracy=0.950,
            median_target=0.955,
            budget_minutes=60,
            runs=3,
            baseline_runs=1,
            shorter_budgets=(15, 30),
            references="hand-built 2-block BN CNN 0.929 in 36 min; Zalando 2 Conv + pooling + BN 0.934",
        ),
        Preset(
            preset="mnist",
            dataset="mnist",
            target_accuracy=0.997,
            budget_minutes=30,
            runs=2,
            baseline_runs=1,
            references="seed MNIST CNN 0.98",
        ),
    )
}


def new_entry(preset: Preset) -> dict[str, Any]:
    """A preset's entry in the report before any of its runs: its targets, and when it was measured."""
    return {
        **preset.model_dump(exclude={"runs", "baseline_runs", "shorter_budgets"}),
        "required_runs": preset.runs,
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": [],
        "baselines": {},
        "reproduced": None,
        "vanilla": None,
    }


def levels(grace_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs whose reach is counted: ASHA's rungs and a trial's full length."""
    return [*rungs(grace_epochs, reduction_factor, max_epochs), max_epochs]


def best_so_far(points: Iterable[tuple[float, float | None]], maximise: bool = True) -> list[list[float]]:
    """[minutes, best score so far] at each point that has a score, in time order."""
    curve: list[list[float]] = []
    for at, score in sorted((p for p in points if p[1] is not None), key=lambda p: p[0]):
        assert score is not None
        best = score if not curve else (max if maximise else min)(curve[-1][1], score)
        curve.append([at, best])
    return curve


def run_row(res: Results, wall_s: float, launched_at: float, rung_levels: Sequence[int], preset: Preset) -> dict:
    """One fmtune run: where its time went, what its trials reached, and whether it met the target.
    ``launched_at`` is when the bench started the process (Unix time): the curve's zero."""
    assert res.retrain is not None and res.test_accuracy is not None, "the run did not retrain"
    stopped = [t.stopped_by for t in res.trials]
    trials_at = [((t.ended_at.timestamp() - launched_at) / 60, t.score) for t in res.trials if t.ended_at]
    within = wall_s <= (res.budget_minutes or preset.budget_minutes) * 60  # the smoke test shortens the budget
    return {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(launched_at)),
        "wall_s": wall_s,
        **{f"{k}_s": res.timing.get(k) for k in (*TIMING_KEYS, "total")},
        "budget_minutes": res.budget_minutes,
        "test_accuracy": res.test_accuracy,
        "trials": len(res.trials),
        "reached": {str(level): sum(len(t.history) >= level for t in res.trials) for level in rung_levels},
        "stopped_asha": stopped.count("Asha"),
        "stopped_budget": stopped.count("budget"),
        "retrain_epochs": res.retrain.epochs_run,
        "retrain_epoch_s": statistics.median(res.retrain.epoch_seconds) if res.retrain.epoch_seconds else None,
        **estimate(res),
        "unused": 1 - wall_s / ((res.budget_minutes or preset.budget_minutes) * 60),
        "seed": res.seed,
        "cpu": cpu_model(),
        "best_val_accuracy": max((t.score for t in res.trials if t.score is not None), default=None),
        "best_hyperparameters": res.best_hyperparameters,
        "curve": best_so_far(trials_at, maximise=res.objective.direction == "max"),
        "within_budget": within,
        "met": within and res.test_accuracy >= preset.target_accuracy,
    }


def estimate(res: Results) -> dict[str, float | None]:
    """What the budget expected a retraining epoch to cost, what one cost (the median of those
    after the first, which also builds the model, and before a last one cut short), and the
    estimate's error."""
    assert res.retrain is not None
    whole = res.retrain.epoch_seconds[: -1 if res.retrain.last_epoch_share < 1 else None]
    later = whole[1:]
    real = statistics.median(later) if later else None
    guess = res.retrain_epoch_estimate
    error = guess / real - 1 if guess and real else None
    return {"retrain_epoch_estimate_s": guess, "retrain_epoch_real_s": real, "estimate_error": error}


def spread(values: Iterable[float | None]) -> dict[str, float] | None:
    """Median, min and max of the values given (None where a run has no value)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return {"median": statistics.median(present), "min": min(present), "max": max(present)}


def summary(rows: Sequence[dict], preset: Preset) -> dict:
    """The runs' medians and spreads, and whether the target held in enough runs, each of them."""
    out: dict[str, Any] = {key: spread(r[key] for r in rows) for key in SUMMARY_KEYS}
    out["reached"] = {level: spread(r["reached"][level] for r in rows) for level in rows[0]["reached"]} if rows else {}
    met = sum(r["met"] for r in rows)
    out["runs_met"] = met
    median = out["test_accuracy"]["median"] if out["test_accuracy"] else 0.0
    median_met = preset.median_target is None or median >= preset.median_target
    out["targets_met"] = len(rows) >= preset.runs and met == len(rows) and median_met
    return out


def vanilla_row(record: dict) -> dict:
    """vanilla_search.py's JSON, with its best-so-far curve in minutes since its start."""
    curve = best_so_far((t["ended_s"] / 60, t["val_accuracy"]) for t in record["trials"])
    return {**record, "curve": curve, "epochs_run": sum(t["epochs"] for t in record["trials"])}


def fmt(value: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def fmt_spread(s: dict[str, float] | None, digits: int = 1, scale: float = 1.0) -> str:
    """'median (min-max)', or just the median when all runs agree."""
    if s is None:
        return "-"
    mid, lo, hi = (fmt(s[k], digits, scale) for k in ("median", "min", "max"))
    return mid if lo == hi else f"{mid} ({lo}-{hi})"


def reached_text(reached: dict[str, Any], pick: Any = lambda v: v) -> str:
    return " / ".join(str(pick(v)) for v in reached.values())


def median_text(p: dict) -> str:
    return f", median >= {p['median_target']}" if p.get("median_target") else ""


def markdown(report: dict) -> str:
    presets = report["presets"]
    lines = [
        "# Accuracy and cost",
        "",
        f"Command: `{report['command']}`. Machine: {report['machine']}. Each preset: `fmtune tune --preset P "
        "--workers 2 --fresh` (search, retraining on train+val, one test evaluation, export) on the real dataset, "
        "each run in a new work dir; wall time is that of the whole process. Then vanilla Keras Tuner under the "
        "same budget (below). Times in minutes; figures over runs are the median (min-max). A run *by hand* was "
        "started the same way outside the bench, timed by GNU time, and added by tests/bench/adopt.py.",
        "",
        "**Targets**",
        "",
        "| preset | dataset | budget | target | runs met | test accuracy | wall | met | for reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in presets.items():
        s = p["summary"]
        lines.append(
            f"| {name} | {p['dataset']} | {p['budget_minutes']:g} min | >= {p['target_accuracy']} in each of "
            f"{p['required_runs']}{median_text(p)} | {s['runs_met']} of {len(p['runs'])} | "
            f"**{fmt_spread(s['test_accuracy'], 4)}** "
            f"| {fmt_spread(s['wall_s'], 1, 60)} | {'yes' if s['targets_met'] else 'no'} | {p['references']} |"
        )
    lines += [
        "",
        "**Each run** (trials reaching epoch ... counts the trials whose history reached each ASHA rung and "
        "the full length)",
        "",
        "| preset | run | wall | startup | search | retraining | export | test accuracy | trials | "
        "reaching epoch | stopped by ASHA / budget | retraining epochs | met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in presets.items():
        for i, r in enumerate(p["runs"], 1):
            times = " | ".join(fmt(r[f"{k}_s"], 1, 60) for k in ("wall", *TIMING_KEYS))
            reach = ", ".join(f"{level}: {n}" for level, n in r["reached"].items())
            lines.append(
                f"| {name} | {i}{' (by hand)' if r.get('by_hand') else ''} | {times} | {r['test_accuracy']:.4f} | "
                f"{r['trials']} | {reach} | "
                f"{r['stopped_asha']} / {r['stopped_budget']} | {r['retrain_epochs']} | {'yes' if r['met'] else 'no'} |"
            )
    lines += [
        "",
        "**Medians over the runs** (min-max)",
        "",
        "| preset | runs | wall | startup | search | retraining | export | test accuracy | trials | "
        "reaching epoch | stopped by ASHA | stopped by budget | retraining epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in presets.items():
        s = p["summary"]
        times = " | ".join(fmt_spread(s[f"{k}_s"], 1, 60) for k in ("wall", *TIMING_KEYS))
        reach = ", ".join(f"{level}: {fmt_spread(v, 0)}" for level, v in s["reached"].items())
        lines.append(
            f"| {name} | {len(p['runs'])} | {times} | {fmt_spread(s['test_accuracy'], 4)} | "
            f"{fmt_spread(s['trials'], 0)} | {reach} | {fmt_spread(s['stopped_asha'], 0)} | "
            f"{fmt_spread(s['stopped_budget'], 0)} | {fmt_spread(s['retrain_epochs'], 0)} |"
        )
    again = {name: p["reproduced"] for name, p in presets.items() if p.get("reproduced")}
    if again:
        lines += [
            "",
            "**Reproducibility**: the last run's best configuration retrained twice more, each in a fresh process, "
            "same seed, the same fixed number of epochs (the run's own, cut to about "
            f"{REPRODUCE_SECONDS / 60:g} minutes of training); target: within 0.3 points.",
            "",
            "| preset | epochs | test accuracy, first | second | difference (points) | met |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in again.items():
            first, second = r["test_accuracy"]
            lines.append(
                f"| {name} | {r['epochs']} | {first:.4f} | {second:.4f} | {r['difference_points']:.2f} | "
                f"{'yes' if r['met'] else 'no'} |"
            )
    vanilla = {name: p["vanilla"] for name, p in presets.items() if p.get("vanilla")}
    if vanilla:
        settings = next(iter(vanilla.values()))
        lines += [
            "",
            f"**Side by side, same wall budget**: vanilla Keras Tuner, {settings['tuner']}, over {settings['space']}; "
            f"{settings['epochs_per_trial']} epochs per trial at batch size {settings['batch_size']}, early stopping "
            f"on {settings['early_stopping']}, {settings['split']}; one process on {settings['threads']} threads; no "
            "trial starts, and a running one stops at an epoch boundary, when the budget (less a reserve for the "
            "test evaluation) would be crossed. Best validation accuracy is each side's own: fmtune's standard and "
            "mnist trials train on a subset, vanilla's on all 54,000 images.",
            "",
            "| preset | budget | fmtune test accuracy | fmtune best val | vanilla trials (epochs) | vanilla best val "
            "| vanilla test accuracy | vanilla wall |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, v in vanilla.items():
            s = presets[name]["summary"]
            best_val = spread(r["best_val_accuracy"] for r in presets[name]["runs"])
            lines.append(
                f"| {name} | {v['budget_minutes']:g} min | **{fmt_spread(s['test_accuracy'], 4)}** | "
                f"{fmt_spread(best_val, 4)} | {len(v['trials'])} ({v['epochs_run']}) | {v['best_val_accuracy']:.4f} "
                f"| **{v['test_accuracy']:.4f}** | {v['wall_seconds'] / 60:.1f} |"
            )
    lines += baselines_markdown(presets)
    lines += [
        "",
        "![best validation accuracy against wall time](accuracy.png)",
        "",
        "Best validation accuracy so far against minutes since start, one panel per preset; "
        "the markers at the end are the test accuracy of the retrained (fmtune) or best (vanilla) model.",
        "",
        "Best hyperparameters:",
        "",
    ]
    for name, p in presets.items():
        for i, r in enumerate(p["runs"], 1):
            started = r.get("started", p["measured_at"])  # rows written before runs had their own start
            lines.append(f"- {name} run {i} ({started}): `{json.dumps(r['best_hyperparameters'])}`")
        if p.get("vanilla"):
            lines.append(f"- {name} vanilla: `{json.dumps(p['vanilla']['best_hyperparameters'])}`")
    return "\n".join(lines) + "\n"


def cpus(rows: Iterable[dict]) -> str:
    """The CPUs ``rows`` ran on ("-" for records older than that field)."""
    return ", ".join(sorted({r["cpu"] for r in rows if r.get("cpu")})) or "-"


def baselines_markdown(presets: dict) -> list[str]:
    """fmtune beside no search and a peer tuner (tests/bench/baselines.py), and how well each
    fmtune run's budget was spent."""
    lines = [
        "",
        "**Against no search and a peer tuner, same wall budget, one at a time** (tests/bench/baselines.py): "
        "*centre* trains the middle of the preset's space with the preset's retraining recipe for the whole "
        "budget; *Optuna* searches the same space with TPE and its Hyperband pruner in 2 worker processes, "
        "trials trained as fmtune's, closed by fmtune's budget rule, then the same retraining for the time left. "
        "Each baseline run uses the seed of the fmtune run of the same number. Figures from different CPUs "
        "(the CPU column) are not comparable.",
        "",
        "| preset | method | runs | test accuracy | trials (pruned or stopped) | search | retraining | "
        "retraining epochs | seeds | CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in presets.items():
        runs = p["runs"]
        lines.append(
            f"| {name} | fmtune | {len(runs)} | **{fmt_spread(spread(r['test_accuracy'] for r in runs), 4)}** | "
            f"{fmt_spread(spread(r['trials'] for r in runs), 0)} "
            f"({fmt_spread(spread(r['stopped_asha'] + r['stopped_budget'] for r in runs), 0)}) | "
            f"{fmt_spread(spread(r['search_s'] for r in runs), 1, 60)} | "
            f"{fmt_spread(spread(r['retrain_s'] for r in runs), 1, 60)} | "
            f"{fmt_spread(spread(r['retrain_epochs'] for r in runs), 0)} | "
            f"{', '.join(str(r.get('seed', '-')) for r in runs)} | {cpus(runs)} |"
        )
        for method, rows in (p.get("baselines") or {}).items():
            trials = "-"
            if method == "optuna":
                pruned = fmt_spread(spread(r["pruned"] for r in rows), 0)
                trials = f"{fmt_spread(spread(r['trials'] for r in rows), 0)} ({pruned})"
            lines.append(
                f"| {name} | {method} | {len(rows)} | **{fmt_spread(spread(r['test_accuracy'] for r in rows), 4)}** "
                f"| {trials} | {fmt_spread(spread(r.get('search_s') for r in rows), 1, 60)} | "
                f"{fmt_spread(spread(r['retrain_s'] for r in rows), 1, 60)} | "
                f"{fmt_spread(spread(r['retrain_epochs'] for r in rows), 0)} | "
                f"{', '.join(str(r['seed']) for r in rows)} | {cpus(rows)} |"
            )
    shorter = [(name, r) for name, p in presets.items() if p.get("shorter") for r in [*p["shorter"], *p["runs"]]]
    if shorter:
        lines += [
            "",
            "**What a shorter budget buys** (one run at each shorter budget, beside the preset's own runs)",
            "",
            "| preset | budget | wall | search | retraining | trials | retraining epochs | test accuracy | seed |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, r in sorted(shorter, key=lambda item: (item[0], item[1]["budget_minutes"] or 0)):
            lines.append(
                f"| {name} | {r['budget_minutes']:g} min | {fmt(r['wall_s'], 1, 60)} | {fmt(r['search_s'], 1, 60)} | "
                f"{fmt(r['retrain_s'], 1, 60)} | {r['trials']} | {r['retrain_epochs']} | {r['test_accuracy']:.4f} | "
                f"{r.get('seed', '-')} |"
            )
    estimated = [
        (name, i, r)
        for name, p in presets.items()
        for i, r in enumerate([*p["runs"], *p.get("shorter", [])], 1)
        if "unused" in r
    ]
    if estimated:
        lines += [
            "",
            "**How the budget was spent**: the budget left unused at the end (target: at most 5%), and the "
            "retraining-epoch estimate the search closed on against the real retraining epochs (median of all but "
            "the first and a last one cut short at the deadline; target: within 20%).",
            "",
            "| preset | run | seed | CPU | unused | estimated epoch (s) | real epoch (s) | error |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, i, r in estimated:
            error = "-" if r["estimate_error"] is None else f"{r['estimate_error']:+.0%}"
            lines.append(
                f"| {name} | {i} | {r['seed']} | {cpus([r])} | {r['unused']:.1%} | "
                f"{fmt(r['retrain_epoch_estimate_s'])} | {fmt(r['retrain_epoch_real_s'])} | {error} |"
            )
    return lines


def write(report: dict, out: Path) -> None:
    """accuracy.json, .md and .png; written after each step, so a later failure keeps what was measured."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(report, indent=2))
    (out / "accuracy.md").write_text(markdown(report))
    from tests.bench.accuracy_plot import plot

    plot(report, out / "accuracy.png")
