"""Accuracy and cost: the presets end to end on the real datasets, beside the seeds' and Zalando's figures.

Each preset runs the whole local pipeline (`fmtune tune --preset P --workers 2 --fresh`): search,
retraining, test evaluation, export. Wall time is split into tuning and retraining as the
coordinator measured them.

Run with `make bench` (python -m tests.bench.accuracy [--only PRESET]). Writes
reports/accuracy.json and .md; with --only, the other presets' rows from the last run are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

COMMAND = "make bench  (python -m tests.bench.accuracy)"


class Run(BaseModel):
    preset: str
    dataset: str
    family: str
    target_accuracy: float
    target_minutes: float | None
    references: str


RUNS = [
    Run(
        preset="quick",
        dataset="Fashion-MNIST",
        family="mlp",
        target_accuracy=0.895,
        target_minutes=5,
        references="seed MLP 0.8798; Zalando best MLP 0.8833",
    ),
    Run(
        preset="standard",
        dataset="Fashion-MNIST",
        family="cnn",
        target_accuracy=0.935,
        target_minutes=60,
        references="seed small CNN ~0.91; Zalando 2 Conv + pooling + BN 0.934",
    ),
    Run(
        preset="mnist",
        dataset="MNIST",
        family="deep_cnn",
        target_accuracy=0.994,
        target_minutes=None,
        references="seed MNIST CNN 0.98",
    ),
]


def measure(run: Run, work: Path, data_dir: Path | None, workers: int) -> dict[str, Any]:
    from fmtune import results

    argv = [sys.executable, "-m", "fmtune", "tune", "--preset", run.preset, "--workers", str(workers), "--fresh"]
    argv += ["--workdir", str(work / "runs"), "--model-repo", str(work / "models")]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    log_path = work / f"{run.preset}.log"
    started = time.monotonic()
    with log_path.open("w") as out:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        code = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"{run.preset}: fmtune tune exited {code}; see {log_path}")
    (path,) = results.find(work / "runs" / run.preset)
    res = results.load(path)
    assert res.retrain is not None and res.test_accuracy is not None
    minutes = (res.tuning_seconds + res.retrain.seconds) / 60
    return {
        **run.model_dump(),
        "command": " ".join(["fmtune", *argv[3:8]]),
        "trials": len(res.trials),
        "completed": sum(t.status == "COMPLETED" for t in res.trials),
        "tuning_s": res.tuning_seconds,
        "retrain_s": res.retrain.seconds,
        "retrain_epochs": res.retrain.epochs_run,
        "wall_s": wall,
        "test_accuracy": res.test_accuracy,
        "best_hyperparameters": res.best_hyperparameters,
        "accuracy_met": res.test_accuracy >= run.target_accuracy,
        "time_met": None if run.target_minutes is None else minutes <= run.target_minutes,
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def markdown(rows: list[dict[str, Any]], machine: str) -> str:
    lines = [
        "# Accuracy and cost",
        "",
        f"Command: `{COMMAND}`. Machine: {machine}. Each preset: `fmtune tune --preset P --workers 2 --fresh` "
        "(search, retraining on train+val, one test evaluation, export) on the real dataset.",
        "",
        "| preset | dataset | family | trials | tuning (min) | retraining (min) | total (min) | test accuracy "
        "| target | met | for reference |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        total = (r["tuning_s"] + r["retrain_s"]) / 60
        target = f">= {r['target_accuracy']}" + (f" in <= {r['target_minutes']:g} min" if r["target_minutes"] else "")
        met = r["accuracy_met"] and r["time_met"] is not False
        lines.append(
            f"| {r['preset']} | {r['dataset']} | {r['family']} | {r['trials']} | {r['tuning_s'] / 60:.1f} | "
            f"{r['retrain_s'] / 60:.1f} ({r['retrain_epochs']} epochs) | {total:.1f} | **{r['test_accuracy']:.4f}** "
            f"| {target} | {'yes' if met else 'no'} | {r['references']} |"
        )
    lines += ["", "Best hyperparameters:", ""]
    lines += [f"- {r['preset']} ({r['measured_at']}): `{json.dumps(r['best_hyperparameters'])}`" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    import platform

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--only", choices=[r.preset for r in RUNS], action="append", help="run just these presets")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("FMTUNE_DATA_DIR"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out_json = args.out / "accuracy.json"
    previous = json.loads(out_json.read_text())["runs"] if out_json.exists() and args.only else []
    work = Path(tempfile.mkdtemp(prefix="fmtune-accuracy-"))
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    measured: dict[str, dict[str, Any]] = {}
    for run in RUNS:
        if args.only and run.preset not in args.only:
            continue
        print(f"accuracy: {run.preset} (log in {work / (run.preset + '.log')})", flush=True)
        measured[run.preset] = measure(run, work, args.data_dir, args.workers)
        rows = [measured.get(r.preset) or next((p for p in previous if p["preset"] == r.preset), None) for r in RUNS]
        present = [r for r in rows if r is not None]
        args.out.mkdir(parents=True, exist_ok=True)  # written after each run: a later failure keeps it
        out_json.write_text(json.dumps({"command": COMMAND, "machine": machine, "runs": present}, indent=2))
        (args.out / "accuracy.md").write_text(markdown(present, machine))
        print(f"accuracy: {run.preset}: test accuracy {measured[run.preset]['test_accuracy']:.4f}", flush=True)
    print((args.out / "accuracy.md").read_text())


if __name__ == "__main__":
    main()
