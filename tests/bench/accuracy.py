"""Accuracy and cost: each preset end to end on the real datasets, beside no search, a peer tuner
and vanilla Keras Tuner under the same budget.

Each preset runs several times from fresh (`fmtune tune --preset P --workers 2 --fresh`, its own work
dir and its own drawn seed each time): search, retraining, test evaluation, export, all within the
preset's budget. A run is judged on its test accuracy and on the wall time of the whole `fmtune
tune` process. With --shorter, one more run under each of the preset's shorter budgets. With
--baselines, the baselines (tests/bench/baselines.py: the centre of the space with no search, and
Optuna) run as many times as the preset says, with the seeds of its last runs. Vanilla Keras Tuner
(tests/bench/vanilla_search.py) searches the same dataset under the same budget in its own process.
Every run is one at a time: they share the machine's cores.

Then the last run's best configuration is retrained twice more, each in a fresh process with the
same seed and epochs (tests/bench/retrain_again.py), and the two test accuracies are compared.

Run with `make bench` (python -m tests.bench.accuracy [--only PRESET] [--runs N] [--more] [--no-vanilla]
[--no-reproduce] [--baselines [centre|optuna ...]] [--shorter]); `--only P --more --runs 0` runs P's
vanilla side-by-side alone. The report is tests/bench/accuracy_report.py's.
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
from pathlib import Path
from typing import Any

from fmtune.config import parse_assignment
from fmtune.results import Results
from fmtune.text import parse_duration
from tests.bench.accuracy_report import (
    COMMAND,
    PRESETS,
    REPRODUCE_SECONDS,
    levels,
    new_entry,
    run_row,
    summary,
    vanilla_row,
    write,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # holds fashion-mnist/ and mnist/
BASELINES = ("centre", "optuna")  # tests/bench/baselines.py

# Measuring: the subprocesses.


def run_fmtune(preset: str, work: Path, data_dir: Path | None, extra: list[str]) -> tuple[Results, float, float, list]:
    """One fresh `fmtune tune --preset P` in its own work dir (see ``run_tune``)."""
    args = ["--preset", preset, "--set", "download=false"]
    args += ["--data-dir", str(data_dir)] if data_dir is not None else []
    return run_tune([*args, *extra], work, preset)


def run_tune(args: list[str], work: Path, label: str, cwd: Path | None = None) -> tuple[Results, float, float, list]:
    """One fresh `fmtune tune ARGS --workers 2` in its own work dir: its results, wall time, start
    time and counted levels (ASHA's rungs and the full length)."""
    argv = [sys.executable, "-m", "fmtune", "tune", *args, "--workers", "2", "--fresh"]
    argv += ["--workdir", str(work / "runs"), "--model-repo", str(work / "models")]
    work.mkdir(parents=True, exist_ok=True)
    log = work / "fmtune.log"
    launched_at, started = time.time(), time.monotonic()
    with log.open("w") as out:
        code = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, env=bench_env(), cwd=cwd)
    wall = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"{label}: fmtune tune exited {code}; see {log}")
    res, counted = finished(work)
    return res, wall, launched_at, counted


def finished(work: Path) -> tuple[Results, list[int]]:
    """A finished run's results (under ``work``/runs), and the levels counted for it: ASHA's rungs
    and the full length, from its own resolved config."""
    from fmtune import config, results

    (path,) = results.find(work / "runs")
    cfg = config.load_resolved(path.parent / "config.yaml")
    asha = cfg.search.asha
    return results.load(path), levels(asha.grace_epochs, asha.reduction_factor, cfg.search.epochs)


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


def run_baseline(method: str, preset: str, seed: int, work: Path, data_dir: Path | None, extra: list[str]) -> dict:
    """One baseline run (tests/bench/baselines.py) in its own process; its record."""
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"seed{seed}.json"
    argv = [sys.executable, "-m", "tests.bench.baselines", method, "--preset", preset, "--seed", str(seed)]
    argv += ["--out", str(out), *(["--data-dir", str(data_dir)] if data_dir else [])]
    argv += extra
    with (work / f"seed{seed}.log").open("w") as log:
        code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=bench_env())
    if code != 0:
        raise SystemExit(f"{method} baseline on {preset} exited {code}; see {work / f'seed{seed}.log'}")
    return json.loads(out.read_text())


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
        argv += [str(epochs), str(out), res.retrain.warm_start or ""]
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
        "--baselines",
        nargs="*",
        choices=BASELINES,
        help="after a preset's runs, its baselines (all, or those named), with the seeds of its last runs",
    )
    parser.add_argument("--shorter", action="store_true", help="one more run at each of a preset's shorter budgets")
    parser.add_argument(
        "--data-dir", type=Path, default=default_data_dir(), help="holds fashion-mnist/ and mnist/ (never downloaded)"
    )
    # For the smoke test: a shorter budget and config overrides for every fmtune run, and a fixed work dir.
    parser.add_argument("--budget", help=argparse.SUPPRESS)
    parser.add_argument("--set", dest="sets", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sets = [arg for a in args.sets for arg in ("--set", a)]
    overrides = dict(map(parse_assignment, args.sets))
    extra = sets + (["--budget", args.budget] if args.budget else [])
    shortened = ["--set", f"budget_minutes={parse_duration(args.budget)}"] if args.budget else []

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
        entry = new_entry(preset)
        if args.more and name in previous:  # its earlier runs, reproduction and side-by-side stay
            kept = ("runs", "summary", "budget_minutes", "reproduced", "vanilla", "baselines", "shorter")
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
        for minutes in preset.shorter_budgets if args.shorter else ():  # what a shorter budget buys
            print(f"accuracy: {name} with a budget of {minutes:g} min", flush=True)
            res, wall, launched_at, counted = run_fmtune(
                name, work / name / f"budget{minutes:g}", args.data_dir, [*sets, "--budget", f"{minutes:g}m"]
            )
            short = run_row(res, wall, launched_at, counted, preset.model_copy(update={"budget_minutes": minutes}))
            entry.setdefault("shorter", []).append(short)
            write(report, args.out)
        for run in entry["runs"][-preset.baseline_runs :] if args.baselines is not None else []:
            for method in args.baselines or BASELINES:
                print(f"accuracy: {name} {method} baseline, seed {run['seed']}", flush=True)
                found = run_baseline(method, name, run["seed"], work / name / method, args.data_dir, sets + shortened)
                entry.setdefault("baselines", {}).setdefault(method, []).append(found)
                write(report, args.out)
        if not args.no_vanilla:  # with --more --runs 0, the side-by-side alone
            print(
                f"accuracy: {name} vanilla Keras Tuner (log in {work / name / 'vanilla' / 'vanilla.log'})", flush=True
            )
            dataset = overrides.get("dataset", preset.dataset)  # as the runs'
            entry["vanilla"] = run_vanilla(dataset, entry["budget_minutes"], work / name / "vanilla", args.data_dir)
            write(report, args.out)
    keep_order()
    write(report, args.out)
    print((args.out / "accuracy.md").read_text())


if __name__ == "__main__":
    main()
