"""Training speed in float32 against mixed bfloat16 (``search.precision``), on this machine's CPU.

Each measurement is a fresh process on all the cores, as retraining runs: it trains the
configuration a preset's search picked on random uint8 images through the retraining's own input
pipeline (flips and shifts), skips the first steps (tracing), and times the next ones. The two
precisions alternate, round after round, so that a drift of the host touches both alike.

Run with `make bench` (python -m tests.bench.precision). Writes reports/precision.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.bench.host import cpu_model

COMMAND = "make bench  (python -m tests.bench.precision)"
POLICIES = ("float32", "mixed_bfloat16")
WARMUP_STEPS = 5
# The best configurations of accuracy.md's runs: standard's (a VGG) and quick's (an MLP).
CASES: dict[str, dict[str, Any]] = {
    "standard (vgg)": {
        "family": "vgg",
        "augment": ["flip", "shift"],
        "values": {"batch_size": 64, "blocks": 2, "width": 32, "dropout": 0.3, "units": 256, "learning_rate": 1e-3},
    },
    "quick (mlp)": {
        "family": "mlp",
        "augment": [],
        "values": {
            "batch_size": 64,
            "num_layers": 2,
            "units_0": 128,
            "dropout_0": 0.1,
            "units_1": 192,
            "dropout_1": 0.35,
            "learning_rate": 1e-3,
        },
    },
}
EPOCH_IMAGES = 60_000  # a retraining epoch on Fashion-MNIST's train+val


def measure(case: str, policy: str, steps: int) -> float:
    """Seconds per training step of ``case`` in ``policy``, in this process."""
    import numpy as np

    from fmtune.config import SearchConfig
    from fmtune.data import Split
    from fmtune.models.plugins import build_from_values
    from fmtune.run.worker import configure_devices
    from fmtune.training import augmented

    configure_devices(0)
    spec = CASES[case]
    search = SearchConfig.model_validate({"family": spec["family"], "precision": policy})
    model, hp = build_from_values(search, spec["values"], (28, 28), 10)
    batch = int(hp.get("batch_size"))
    rng = np.random.default_rng(0)
    count = batch * (WARMUP_STEPS + steps)
    split = Split(rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count).astype(np.int64))
    batches = augmented(split, batch, spec["augment"], seed=0, num_classes=10, shuffle=False)
    model.fit(batches.take(WARMUP_STEPS), verbose=0)
    started = time.perf_counter()
    model.fit(batches.skip(WARMUP_STEPS), verbose=0)
    return (time.perf_counter() - started) / steps


def run_one(case: str, policy: str, steps: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.precision", "--one", case, policy, "--steps", str(steps)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def epoch_seconds(step_seconds: float, batch: int) -> float:
    return step_seconds * EPOCH_IMAGES / batch


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Training speed: float32 against mixed bfloat16",
        "",
        f"Command: `{COMMAND}`. Machine: {platform.machine()}, {results['cpu']}, native bfloat16: "
        f"{'yes' if results['native_bfloat16'] else 'no'}. Each figure: seconds for a retraining epoch of "
        f"{EPOCH_IMAGES:,} images (from {results['steps']} timed steps on all the cores), median (min-max) "
        f"over {results['rounds']} rounds, the two precisions alternating.",
        "",
        "| case | batch | float32 (s) | mixed_bfloat16 (s) | speed-up |",
        "|---|---|---|---|---|",
    ]
    for case, row in results["cases"].items():
        cells = []
        for policy in POLICIES:
            epochs = [epoch_seconds(s, row["batch"]) for s in row[policy]]
            cells.append(f"{statistics.median(epochs):.1f} ({min(epochs):.1f}-{max(epochs):.1f})")
        ratio = statistics.median(row["float32"]) / statistics.median(row["mixed_bfloat16"])
        lines.append(f"| {case} | {row['batch']} | {cells[0]} | {cells[1]} | {ratio:.2f}x |")
    lines += [
        "",
        "`search.precision: auto` trains in mixed bfloat16 only where the CPU computes bfloat16 natively "
        "(AVX512-BF16 or AMX); elsewhere TensorFlow emulates it, slower than float32. No preset uses it: what "
        "it did to a standard run's accuracy is in reports/retraining-pace.md (standard, seed 42).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--one", nargs=2, metavar=("CASE", "POLICY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(measure(args.one[0], args.one[1], args.steps))
        return
    from fmtune.devices import native_bfloat16

    results: dict[str, Any] = {
        "cpu": cpu_model(),
        "native_bfloat16": native_bfloat16(),
        "rounds": args.rounds,
        "steps": args.steps,
        "cases": {},
    }
    for case, spec in CASES.items():
        row: dict[str, Any] = {"batch": spec["values"]["batch_size"], **{p: [] for p in POLICIES}}
        for round_ in range(args.rounds):
            for policy in POLICIES if round_ % 2 == 0 else POLICIES[::-1]:
                row[policy].append(run_one(case, policy, args.steps))
                print(f"{case} {policy}: {epoch_seconds(row[policy][-1], row['batch']):.1f} s/epoch", flush=True)
        results["cases"][case] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "precision.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
