"""Serving benchmark: the built-in server over gRPC and REST against the SavedModel in-process.

Run with `make bench`. Writes reports/serving.json and reports/serving.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.integration.helpers import free_ports, serve_argv

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COMMAND = "make bench  (python -m tests.bench.serving)"
# One model per preset family: the quick preset's MLP and the standard preset's CNN.
MODELS: dict[str, dict[str, Any]] = {
    "mlp": {
        "num_layers": 2,
        "units_0": 512,
        "units_1": 256,
        "dropout_0": 0.2,
        "dropout_1": 0.2,
        "learning_rate": 1e-3,
        "batch_size": 128,
    },
    "cnn": {
        "filters_0": 64,
        "filters_1": 64,
        "kernel_size": 3,
        "units": 128,
        "dropout": 0.3,
        "l2": 1e-4,
        "learning_rate": 1e-3,
        "batch_size": 128,
    },
}


def latency_ms(call: Callable[[], Any], count: int, warmup: int = 30) -> dict[str, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples),
        "p99_ms": samples[int(len(samples) * 0.99) - 1],
        "mean_ms": statistics.fmean(samples),
        "calls": count,
    }


def throughput(call: Callable[[], Any], batch: int, seconds: float, concurrency: int) -> dict[str, float]:
    """Images per second with ``concurrency`` callers in flight (the same for every path).

    One caller measures a client waiting on each answer; several measure a loaded server, where
    in-process calls run in parallel on the cores and the server may batch requests together.
    """
    for _ in range(5):
        call()
    counts = [0] * concurrency
    deadline = time.perf_counter() + seconds

    def loop(slot: int) -> None:
        while time.perf_counter() < deadline:
            call()
            counts[slot] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "images_per_s": sum(counts) * batch / elapsed,
        "calls": sum(counts),
        "batch": batch,
        "concurrency": concurrency,
    }


def measure(family: str, values: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Batch-1 latency and batch-64 throughput of one exported model: in-process, gRPC, REST."""
    import tensorflow as tf

    from fmtune import export
    from fmtune.client import FmtuneClient
    from fmtune.search_spaces import build_from_values

    repo = Path(tempfile.mkdtemp(prefix="fmtune-bench-")) / "models"
    model, _ = build_from_values(family, values)
    card = export.ModelCard(
        model_name="fmtune",
        dataset="fashion_mnist",
        class_names=[str(i) for i in range(10)],
        family=family,
        hyperparameters=values,
        config_digest="bench",
        experiment="bench",
    )
    _, path = export.publish(model, repo, card)
    rng = np.random.default_rng(0)
    one, many = rng.integers(0, 256, (1, 28, 28), np.uint8), rng.integers(0, 256, (64, 28, 28), np.uint8)
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]

    def in_process(images: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in fn(image=tf.constant(images)).items()}

    grpc_port, rest_port = free_ports(2)
    server = subprocess.Popen(
        serve_argv(repo, grpc_port, rest_port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    grpc_client = FmtuneClient(f"127.0.0.1:{grpc_port}", timeout=30)
    rest_client = FmtuneClient(f"http://127.0.0.1:{rest_port}", timeout=30)
    paths: dict[str, Callable[[np.ndarray], Any]] = {
        "in_process": in_process,
        "grpc": grpc_client.predict,
        "rest": rest_client.predict,
    }
    # A status call does no model work: its latency is what the transport alone costs a request.
    status_calls: dict[str, Callable[[], Any]] = {"grpc": grpc_client.status, "rest": rest_client.status}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    try:
        grpc_client.wait_until_ready(120)
        # Interleaved rounds, medians reported: a shared machine's load drifts, and this spreads it evenly.
        for _ in range(args.rounds):
            for name, call in paths.items():
                rounds[name].append(
                    {
                        "batch1": latency_ms(lambda c=call: c(one), args.calls),
                        **{
                            f"batch64_x{n}": throughput(lambda c=call: c(many), 64, args.seconds, n)
                            for n in args.concurrency
                        },
                        "status": latency_ms(status_calls[name], args.calls) if name in status_calls else {},
                    }
                )
    finally:
        grpc_client.close()
        rest_client.close()
        server.terminate()
        server.wait(30)
    results = {
        name: {part: {key: statistics.median(r[part][key] for r in runs) for key in runs[0][part]} for part in runs[0]}
        for name, runs in rounds.items()
    }
    base = results["in_process"]
    for name in ("grpc", "rest"):
        results[name]["batch1"]["p50_overhead_ms"] = results[name]["batch1"]["p50_ms"] - base["batch1"]["p50_ms"]
        for n in args.concurrency:
            part = results[name][f"batch64_x{n}"]
            part["ratio_to_in_process"] = part["images_per_s"] / base[f"batch64_x{n}"]["images_per_s"]
    return {
        "hyperparameters": values,
        "parameters": int(model.count_params()),
        "results": results,
        "met": {
            "grpc_batch1_p50": results["grpc"]["batch1"]["p50_overhead_ms"] <= 2.0,
            **{
                f"grpc_batch64_x{n}": results["grpc"][f"batch64_x{n}"]["ratio_to_in_process"] >= 0.7
                for n in args.concurrency
            },
        },
    }


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    levels = args.concurrency
    lines = [
        "# Serving benchmark",
        "",
        f"Command: `{COMMAND}`. Machine: {report['machine']}.",
        "Latency: one caller, sequential calls. Throughput: batch-64 calls from N callers in flight, the same N on "
        "every path (in-process: N threads calling the SavedModel). The server is the built-in one "
        "(`fmtune serve --builtin`) in its own process, sharing the cores with the client (the SDK, "
        f"`FmtuneClient`). Medians of {args.rounds} interleaved rounds.",
        "",
        "| model | path | batch 1 p50 (ms) | batch 1 p99 (ms) | p50 over in-process (ms) | "
        + " | ".join(f"batch 64 images/s, {n} caller{'s' if n > 1 else ''} | vs in-process" for n in levels)
        + " |",
        "|---|---|---|---|---|" + "---|---|" * len(levels),
    ]
    for family, entry in report["models"].items():
        for name in ("in_process", "grpc", "rest"):
            r = entry["results"][name]
            cells = [
                f"{r[f'batch64_x{n}']['images_per_s']:.0f} | {r[f'batch64_x{n}'].get('ratio_to_in_process', 1):.2f}x"
                for n in levels
            ]
            lines.append(
                f"| {family} ({entry['parameters']:,} params) | {name} | {r['batch1']['p50_ms']:.2f} | "
                f"{r['batch1']['p99_ms']:.2f} | {r['batch1'].get('p50_overhead_ms', 0):.2f} | {' | '.join(cells)} |"
            )
    lines += [
        "",
        "Targets: gRPC batch-1 p50 within 2 ms of in-process; gRPC batch-64 throughput at least 0.7x in-process.",
    ]
    for family, entry in report["models"].items():
        r = entry["results"]
        batch64_ms = 64 / r["in_process"][f"batch64_x{levels[0]}"]["images_per_s"] * 1000
        lines.append(
            f"- {family}: a status call (no model work) takes {r['grpc']['status']['p50_ms']:.2f} ms over gRPC and "
            f"{r['rest']['status']['p50_ms']:.2f} ms over REST at p50, beside {batch64_ms:.2f} ms for 64 images "
            f"in-process ({levels[0]} caller{'s' if levels[0] > 1 else ''})."
        )
    for family, entry in report["models"].items():
        verdict = {k: "met" if v else "NOT met" for k, v in entry["met"].items()}
        throughput = ", ".join(f"{n} caller{'s' if n > 1 else ''} {verdict[f'grpc_batch64_x{n}']}" for n in levels)
        lines.append(f"- {family}: latency {verdict['grpc_batch1_p50']}; throughput {throughput}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4], help="callers in flight for throughput (each level)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    report = {
        "command": COMMAND,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "models": {family: measure(family, MODELS[family], args) for family in args.models},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(report, indent=2))
    text = markdown(report, args)
    (args.out / "serving.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
