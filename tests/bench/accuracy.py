"""Accuracy and cost: each preset end to end on the real datasets, beside vanilla Keras Tuner under the same budget.

Each preset runs several times from fresh (`fmtune tune --preset P --workers 2 --fresh`, its own work
dir each time): search, retraining, test evaluation, export, all within the preset's budget. A run is
judged on its test accuracy and on the wall time of the whole `fmtune tune` process. After a preset's
runs, vanilla Keras Tuner (tests/bench/vanilla_search.py) searches the same dataset under the same
budget in its own process, and its best model is evaluated on the test set.

Then the last run's best configuration is retrained twice more, each in a fresh process with the
same seed and epochs (tests/bench/retrain_again.py), and the two test accuracies are compared.

Run with `make bench` (python -m tests.bench.accuracy [--only PRESET] [--runs N] [--more] [--no-vanilla]
[--no-reproduce]); `--only P --more --runs 0` runs P's vanilla side-by-side alone.
Writes reports/accuracy.json, .md and .png; with --only, the other presets' results from the last
report are kept, and with --more, the preset's own runs too (the new runs are added to them). The
datasets are never downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fmtune.results import Results
from fmtune.tuning.stopping.asha import rungs

COMMAND = "make bench  (python -m tests.bench.accuracy)"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # holds fashion-mnist/ and mnist/
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
    target_accuracy: float
    budget_minutes: float
    runs: int  # the target holds in each of this many runs
    references: str


PRESETS = {
    p.preset: p
    for p in (
        Preset(
            preset="quick",
            dataset="fashion_mnist",
            target_accuracy=0.895,
            budget_minutes=4,
            runs=3,
            references="seed MLP 0.8798; Zalando best MLP 0.8833",
        ),
        Preset(
            preset="standard",
            dataset="fashion_mnist",
            target_accuracy=0.935,
            budget_minutes=60,
            runs=2,
            references="hand-built 2-block BN CNN 0.929 in 36 min; Zalando 2 Conv + pooling + BN 0.934",
        ),
        Preset(
            preset="mnist",
            dataset="mnist",
            target_accuracy=0.995,
            budget_minutes=30,
            runs=2,
            references="seed MNIST CNN 0.98",
        ),
    )
}


# Pure parts: from a run's results.json (or vanilla's JSON) to rows, summaries and the report.


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
        "best_val_accuracy": max((t.score for t in res.trials if t.score is not None), default=None),
        "best_hyperparameters": res.best_hyperparameters,
        "curve": best_so_far(trials_at, maximise=res.objective.direction == "max"),
        "within_budget": within,
        "met": within and res.test_accuracy >= preset.target_accuracy,
    }


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
    out["targets_met"] = len(rows) >= preset.runs and met == len(rows)
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


def markdown(report: dict) -> str:
    presets = report["presets"]
    lines = [
        "# Accuracy and cost",
        "",
        f"Command: `{report['command']}`. Machine: {report['machine']}. Each preset: `fmtune tune --preset P "
        "--workers 2 --fresh` (search, retraining on train+val, one test evaluation, export) on the real dataset, "
        "each run in a new work dir; wall time is that of the whole process. Then vanilla Keras Tuner under the "
        "same budget (below). Times in minutes; figures over runs are the median (min-max).",
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
            f"{p['required_runs']} | {s['runs_met']} of {len(p['runs'])} | **{fmt_spread(s['test_accuracy'], 4)}** "
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
                f"| {name} | {i} | {times} | {r['test_accuracy']:.4f} | {r['trials']} | {reach} | "
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


def plot(report: dict, path: Path) -> Path:
    """Best validation accuracy against wall time, fmtune's runs and vanilla's, one panel per preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = report["presets"]
    fig, axes = plt.subplots(1, len(presets), figsize=(5.5 * len(presets), 4.2), squeeze=False)
    for ax, (name, p) in zip(axes[0], presets.items(), strict=True):
        ys: list[float] = []
        for i, r in enumerate(p["runs"], 1):
            xs, bests = zip(*r["curve"], strict=True) if r["curve"] else ((), ())
            (line,) = ax.step(xs, bests, where="post", label=f"fmtune run {i}")
            ax.plot(r["wall_s"] / 60, r["test_accuracy"], "*", ms=12, color=line.get_color())
            ys += [*bests, r["test_accuracy"]]
        if v := p.get("vanilla"):
            xs, bests = zip(*v["curve"], strict=True) if v["curve"] else ((), ())
            ax.step(xs, bests, where="post", color="black", ls="--", label="vanilla KT RandomSearch")
            ax.plot(v["wall_seconds"] / 60, v["test_accuracy"], "X", ms=10, color="black")
            ys += [*bests, v["test_accuracy"]]
        ax.axvline(p["budget_minutes"], color="grey", lw=0.8, ls=":", label="budget")
        ax.axhline(p["target_accuracy"], color="red", lw=0.8, ls=":", label="target (test)")
        ys.append(p["target_accuracy"])
        ax.set_ylim(max(min(ys), max(ys) - 0.1) - 0.005, max(ys) + 0.005)  # the last 10 points, where runs differ
        ax.set(title=f"{name} ({p['dataset']})", xlabel="minutes since start", ylabel="best val accuracy so far")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Best validation accuracy against wall time (markers: test accuracy at the end)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(report: dict, out: Path) -> None:
    """accuracy.json, .md and .png; written after each step, so a later failure keeps what was measured."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(report, indent=2))
    (out / "accuracy.md").write_text(markdown(report))
    plot(report, out / "accuracy.png")


# Measuring: the subprocesses.


def run_fmtune(preset: str, work: Path, data_dir: Path | None, extra: list[str]) -> tuple[Results, float, float, list]:
    """One fresh `fmtune tune` in its own work dir: its results, wall time, start time and counted levels."""
    from fmtune import config, results

    argv = [sys.executable, "-m", "fmtune", "tune", "--preset", preset, "--workers", "2", "--fresh"]
    argv += ["--workdir", str(work / "runs"), "--model-repo", str(work / "models"), "--set", "download=false"]
    argv += ["--data-dir", str(data_dir)] if data_dir is not None else []
    work.mkdir(parents=True, exist_ok=True)
    log = work / "fmtune.log"
    launched_at, started = time.time(), time.monotonic()
    with log.open("w") as out:
        code = subprocess.call(argv + extra, stdout=out, stderr=subprocess.STDOUT, env=bench_env())
    wall = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"{preset}: fmtune tune exited {code}; see {log}")
    (path,) = results.find(work / "runs")
    cfg = config.load_resolved(path.parent / "config.yaml")
    asha = cfg.search.asha
    counted = levels(asha.grace_epochs, asha.reduction_factor, cfg.search.epochs)
    return results.load(path), wall, launched_at, counted


def run_vanilla(dataset: str, budget_minutes: float, work: Path, data_dir: Path | None) -> dict:
    argv = [sys.executable, "-m", "tests.bench.vanilla_search", "--budget-minutes", f"{budget_minutes:g}"]
    argv += ["--dataset", dataset, "--out", str(work)]
    argv += ["--data-dir", str(data_dir)] if data_dir is not None else []
    work.mkdir(parents=True, exist_ok=True)
    log = work / "vanilla.log"
    started = time.monotonic()
    with log.open("w") as out:
        code = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, env=bench_env())
    if code != 0:
        raise SystemExit(f"vanilla search on {dataset} exited {code}; see {log}")
    record = json.loads((work / "vanilla.json").read_text())
    return {**vanilla_row(record), "process_wall_s": time.monotonic() - started}


def reproduce(run_dir: Path, res: Results, work: Path) -> dict:
    """The run's best configuration retrained twice more, each in a fresh process, with the same
    seed and a fixed number of epochs (the run's own, cut to about REPRODUCE_SECONDS of training)."""
    from fmtune import results

    assert res.retrain is not None and res.best_hyperparameters is not None
    (path,) = results.find(run_dir / "runs")
    epoch_s = statistics.median(res.retrain.epoch_seconds) if res.retrain.epoch_seconds else 1.0
    epochs = max(1, min(res.retrain.epochs_run, int(REPRODUCE_SECONDS // epoch_s)))
    work.mkdir(parents=True, exist_ok=True)
    values = work / "values.json"
    values.write_text(json.dumps(res.best_hyperparameters))
    accuracies = []
    for i in (1, 2):
        out = work / f"retrain{i}.json"
        argv = [sys.executable, "-m", "tests.bench.retrain_again", str(path.parent / "config.yaml"), str(values)]
        argv += [str(epochs), str(out)]
        with (work / f"retrain{i}.log").open("w") as log:
            code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=bench_env())
        if code != 0:
            raise SystemExit(f"retraining again exited {code}; see {work / f'retrain{i}.log'}")
        accuracies.append(json.loads(out.read_text())["test_accuracy"])
    difference = abs(accuracies[0] - accuracies[1]) * 100
    return {"epochs": epochs, "test_accuracy": accuracies, "difference_points": difference, "met": difference <= 0.3}


def bench_env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def default_data_dir() -> Path | None:
    if env := os.environ.get("FMTUNE_DATA_DIR"):
        return Path(env)
    return SHARED_DATA if SHARED_DATA.is_dir() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--only", choices=list(PRESETS), action="append", help="run just these presets")
    parser.add_argument("--runs", type=int, help="fresh runs per preset (default: 3 for quick, 2 for the others)")
    parser.add_argument("--more", action="store_true", help="add the runs to the preset's runs in the last report")
    parser.add_argument("--no-vanilla", action="store_true", help="skip the vanilla Keras Tuner searches")
    parser.add_argument("--no-reproduce", action="store_true", help="skip retraining a best configuration twice")
    parser.add_argument(
        "--data-dir", type=Path, default=default_data_dir(), help="holds fashion-mnist/ and mnist/ (never downloaded)"
    )
    # For the smoke test: a shorter budget and config overrides for every fmtune run, and a fixed work dir.
    parser.add_argument("--budget", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="sets", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    extra = [arg for a in args.sets for arg in ("--set", a)] + (["--budget", args.budget] if args.budget else [])

    out_json = args.out / "accuracy.json"
    previous = json.loads(out_json.read_text()).get("presets", {}) if out_json.exists() and args.only else {}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="fmtune-accuracy-"))
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    report: dict[str, Any] = {"command": COMMAND, "machine": machine, "data_dir": str(args.data_dir), "presets": {}}

    def keep_order() -> None:  # the presets in their usual order, measured or kept
        merged = {**previous, **report["presets"]}
        report["presets"] = {name: merged[name] for name in PRESETS if name in merged}

    for name, preset in PRESETS.items():
        if args.only and name not in args.only:
            continue
        entry: dict[str, Any] = {
            **preset.model_dump(exclude={"runs"}),
            "required_runs": preset.runs,
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "runs": [],
            "reproduced": None,
            "vanilla": None,
        }
        if args.more and name in previous:  # its earlier runs, reproduction and side-by-side stay
            kept = ("runs", "summary", "budget_minutes", "reproduced", "vanilla")
            entry |= {key: previous[name][key] for key in kept if key in previous[name]}
        report["presets"][name] = entry
        res = None
        first = len(entry["runs"]) + 1
        for i in range(first, first + (preset.runs if args.runs is None else args.runs)):
            print(f"accuracy: {name} run {i} (log in {work / name / f'run{i}' / 'fmtune.log'})", flush=True)
            res, wall, launched_at, counted = run_fmtune(name, work / name / f"run{i}", args.data_dir, extra)
            entry["runs"].append(run_row(res, wall, launched_at, counted, preset))
            entry["budget_minutes"] = res.budget_minutes or preset.budget_minutes
            entry["summary"] = summary(entry["runs"], preset)
            keep_order()
            write(report, args.out)
            print(f"accuracy: {name} run {i}: test accuracy {res.test_accuracy:.4f} in {wall / 60:.1f} min", flush=True)
        if not args.no_reproduce and res is not None:
            print(f"accuracy: {name} run {i}'s best configuration retrained twice", flush=True)
            entry["reproduced"] = reproduce(work / name / f"run{i}", res, work / name / "reproduce")
            write(report, args.out)
        if not args.no_vanilla:  # with --more --runs 0, the side-by-side alone
            print(
                f"accuracy: {name} vanilla Keras Tuner (log in {work / name / 'vanilla' / 'vanilla.log'})", flush=True
            )
            entry["vanilla"] = run_vanilla(
                preset.dataset, entry["budget_minutes"], work / name / "vanilla", args.data_dir
            )
            write(report, args.out)
    keep_order()
    write(report, args.out)
    print((args.out / "accuracy.md").read_text())


if __name__ == "__main__":
    main()
