"""Serving benchmark: the built-in server over gRPC and REST against the SavedModel in-process.

Run with `make bench`. Writes reports/serving.json and reports/serving.md.

Two ways to load the server are measured. Shared: the client and the server on the same cores, as
one user sees it. Isolated: the model path (the server, or the in-process threads) gets one core
and the load generator the others, so a server's throughput is not cut by its own client's CPU, as
on a cluster where the callers run elsewhere. The throughput target is judged on the isolated run.
The first request after a version loads is timed on fresh servers, with the export's warmup
records and without them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
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


def images(count: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 28, 28), np.uint8)


def load_in_process(path: Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """The SavedModel called as a user would without a server: its serving signature, in this process."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    return lambda batch: {k: v.numpy() for k, v in fn(image=tf.constant(batch)).items()}


_LOADED: dict[Path, Callable[[np.ndarray], Any]] = {}


def in_process_throughput(path: Path, seconds: float, concurrency: int) -> dict[str, float]:
    """Run in a pinned worker process, which keeps the model loaded from round to round."""
    if path not in _LOADED:
        _LOADED[path] = load_in_process(path)
    call, batch = _LOADED[path], images(64)
    return throughput(lambda: call(batch), 64, seconds, concurrency)


def client_throughput(target: str, seconds: float, concurrency: int) -> dict[str, float]:
    """Run in a pinned worker process: the SDK as the load generator."""
    from fmtune.client import FmtuneClient

    batch = images(64)
    with FmtuneClient(target, timeout=30) as client:
        return throughput(lambda: client.predict(batch), 64, seconds, concurrency)


def isolated_cores() -> tuple[set[int], set[int]] | None:
    """One core for the model path and the rest for the load generator; None where that cannot be set."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_setaffinity") else []
    return ({cores[-1]}, set(cores[:-1])) if len(cores) >= 2 else None


def pinned_pool(cores: set[int]) -> ProcessPoolExecutor:
    """A worker process on ``cores`` from its start, so every thread it (and TensorFlow) makes stays there."""
    return ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=os.sched_setaffinity, initargs=(0, cores)
    )


def start_server(
    stack: contextlib.ExitStack, repo: Path, cores: set[int] | None = None, src: Path | None = None
) -> tuple[str, str]:
    """``fmtune serve --builtin`` (on ``cores``, from the sources in ``src``, if given), stopped with
    ``stack``; its gRPC and REST targets once ready."""
    from fmtune.client import FmtuneClient

    grpc_port, rest_port = free_ports(2)
    server = subprocess.Popen(
        serve_argv(repo, grpc_port, rest_port),
        env={**os.environ, "PYTHONPATH": str(src)} if src else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=partial(os.sched_setaffinity, 0, cores) if cores else None,
    )
    stack.callback(server.wait, 30)
    stack.callback(server.terminate)
    with FmtuneClient(f"127.0.0.1:{grpc_port}", timeout=30) as client:
        client.wait_until_ready(120)
    return f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}"


def export_model(family: str, values: dict[str, Any]) -> tuple[Any, Any, Path]:
    """The family's model, untrained (serving cost does not depend on the weights), published as
    version 1 of a new repository: the model, its card and the version's path."""
    from fmtune import export
    from fmtune.config import SearchConfig
    from fmtune.models.plugins import build_from_values

    model, _ = build_from_values(SearchConfig(family=family), values, (28, 28), 10)
    card = export.ModelCard(
        model_name="fmtune",
        dataset="fashion_mnist",
        class_names=[str(i) for i in range(10)],
        input_shape=[28, 28],
        family=family,
        hyperparameters=values,
        config_digest="bench",
        experiment="bench",
    )
    _, path = export.publish(model, Path(tempfile.mkdtemp(prefix="fmtune-bench-")) / "models", card)
    return model, card, path


def measure(family: str, values: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Batch-1 latency and batch-64 throughput of one exported model: in-process, gRPC, REST."""
    from fmtune.client import FmtuneClient

    model, card, path = export_model(family, values)
    repo = path.parents[1]
    one, many = images(1), images(64)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in ("in_process", "grpc", "rest")}
    with contextlib.ExitStack() as stack:
        grpc_target, rest_target = start_server(stack, repo)
        grpc_client = stack.enter_context(FmtuneClient(grpc_target, timeout=30))
        rest_client = stack.enter_context(FmtuneClient(rest_target, timeout=30))
        paths: dict[str, Callable[[np.ndarray], Any]] = {
            "in_process": load_in_process(path),
            "grpc": grpc_client.predict,
            "rest": rest_client.predict,
        }
        # A status call does no model work: its latency is what the transport alone costs a request.
        status_calls: dict[str, Callable[[], Any]] = {"grpc": grpc_client.status, "rest": rest_client.status}
        isolated: dict[str, tuple[ProcessPoolExecutor, Callable[..., dict[str, float]], Any]] = {}
        if split := isolated_cores():
            model_core, load_cores = split
            pinned_grpc, pinned_rest = start_server(stack, repo, model_core)
            on_model_core = stack.enter_context(pinned_pool(model_core))
            on_load_cores = stack.enter_context(pinned_pool(load_cores))
            isolated = {
                "in_process": (on_model_core, in_process_throughput, path),
                "grpc": (on_load_cores, client_throughput, pinned_grpc),
                "rest": (on_load_cores, client_throughput, pinned_rest),
            }
        # Interleaved rounds, medians reported: a shared machine's load drifts, and this spreads it evenly.
        for _ in range(args.rounds):
            for name, call in paths.items():
                rounds[name].append(
                    {
                        "batch1": latency_ms(partial(call, one), args.calls),
                        **{
                            f"batch64_x{n}": throughput(partial(call, many), 64, args.seconds, n)
                            for n in args.concurrency
                        },
                        "status": latency_ms(status_calls[name], args.calls) if name in status_calls else {},
                    }
                )
            for name, (pool, task, where) in isolated.items():  # one at a time: each has the cores to itself
                rounds[name][-1]["isolated"] = pool.submit(task, where, args.seconds, args.isolated).result()
    results = {
        name: {part: {key: statistics.median(r[part][key] for r in runs) for key in runs[0][part]} for part in runs[0]}
        for name, runs in rounds.items()
    }
    base = results["in_process"]
    for name in ("grpc", "rest"):
        results[name]["batch1"]["p50_overhead_ms"] = results[name]["batch1"]["p50_ms"] - base["batch1"]["p50_ms"]
        for part in throughput_parts(results[name]):
            results[name][part]["ratio_to_in_process"] = (
                results[name][part]["images_per_s"] / base[part]["images_per_s"]
            )
    met = {"grpc_batch1_p50": results["grpc"]["batch1"]["p50_overhead_ms"] <= 2.0}
    if "isolated" in results["grpc"]:
        met["grpc_batch64_isolated"] = results["grpc"]["isolated"]["ratio_to_in_process"] >= 0.7
    first = first_request(model, card, args.rounds)
    met["first_request_with_warmup_within_2x"] = first["with_warmup_ms"] <= 2 * first["warm_p50_ms"]
    return {
        "hyperparameters": values,
        "parameters": int(model.count_params()),
        "results": results,
        "first_request": first,
        "met": met,
    }


def after_idle_ms(call: Callable[[], Any], idle_seconds: float = 1.0, calls: int = 5) -> float:
    """A warm server's latency when each call comes after a pause (median): what a first request
    pays for waking threads and cold caches, initialisation aside."""
    took = []
    for _ in range(calls):
        time.sleep(idle_seconds)
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


def first_request(model: Any, card: Any, rounds: int) -> dict[str, float]:
    """gRPC batch-1 latency of the first request after a version loads, with and without the
    export's warmup records, beside a warm request's p50 and a warm request after a pause
    (medians over ``rounds`` fresh servers)."""
    import shutil

    from fmtune import export
    from fmtune.client import FmtuneClient
    from fmtune.serving import warmup

    one = images(1)
    samples: dict[str, list[float]] = {
        "with_warmup_ms": [],
        "without_warmup_ms": [],
        "warm_p50_ms": [],
        "warm_after_idle_ms": [],
    }
    for _ in range(rounds):
        for warm in (True, False):
            repo = Path(tempfile.mkdtemp(prefix="fmtune-bench-first-")) / "models"
            _, path = export.publish(model, repo, card)
            if not warm:
                shutil.rmtree(warmup.path_in(path).parent)
            with contextlib.ExitStack() as stack:
                grpc_target, _ = start_server(stack, repo)
                client = stack.enter_context(FmtuneClient(grpc_target, timeout=60))
                client.status()  # the channel is connected before the clock starts
                started = time.perf_counter()
                client.predict(one)
                samples["with_warmup_ms" if warm else "without_warmup_ms"].append(
                    (time.perf_counter() - started) * 1000
                )
                if warm:
                    samples["warm_p50_ms"].append(latency_ms(partial(client.predict, one), 200)["p50_ms"])
                    samples["warm_after_idle_ms"].append(after_idle_ms(partial(client.predict, one)))
            shutil.rmtree(repo.parent, ignore_errors=True)
    return {name: statistics.median(values) for name, values in samples.items()}


def throughput_parts(result: dict[str, Any]) -> list[str]:
    return [part for part in result if part.startswith("batch64_") or part == "isolated"]


def part_label(part: str, result: dict[str, Any]) -> str:
    n = int(result[part]["concurrency"])
    callers = f"{n} caller{'s' if n > 1 else ''}"
    return f"{callers}, isolated" if part == "isolated" else f"{callers}, shared"


def markdown(report: dict[str, Any], args: argparse.Namespace) -> str:
    first = next(iter(report["models"].values()))["results"]["in_process"]
    parts = throughput_parts(first)
    lines = [
        "# Serving benchmark",
        "",
        f"Command: `{COMMAND}`. Machine: {report['machine']}.",
        "Latency: one caller, sequential calls. Throughput: batch-64 calls from N callers in flight, the same N on "
        "every path (in-process: N threads calling the SavedModel). The server is the built-in one "
        "(`fmtune serve --builtin`) in its own process; the client is the SDK (`FmtuneClient`). "
        "*Shared*: client and server on the same cores. *Isolated*: the model path (the server, or the in-process "
        "threads) on one core and the load generator on the other, as on a cluster where callers run elsewhere. "
        f"Medians of {args.rounds} interleaved rounds.",
        "",
        "| model | path | batch 1 p50 (ms) | batch 1 p99 (ms) | p50 over in-process (ms) | "
        + " | ".join(f"batch 64 images/s, {part_label(part, first)} | vs in-process" for part in parts)
        + " |",
        "|---|---|---|---|---|" + "---|---|" * len(parts),
    ]
    for family, entry in report["models"].items():
        for name in ("in_process", "grpc", "rest"):
            r = entry["results"][name]
            cells = [f"{r[part]['images_per_s']:.0f} | {r[part].get('ratio_to_in_process', 1):.2f}x" for part in parts]
            lines.append(
                f"| {family} ({entry['parameters']:,} params) | {name} | {r['batch1']['p50_ms']:.2f} | "
                f"{r['batch1']['p99_ms']:.2f} | {r['batch1'].get('p50_overhead_ms', 0):.2f} | {' | '.join(cells)} |"
            )
    lines += [
        "",
        "Targets: gRPC batch-1 p50 within 2 ms of in-process; gRPC batch-64 throughput at least 0.7x in-process, "
        "judged on the isolated run (shared, the client's own CPU comes out of the server's cores).",
    ]
    for family, entry in report["models"].items():
        r = entry["results"]
        batch64_ms = 64 / r["in_process"][parts[0]]["images_per_s"] * 1000
        lines.append(
            f"- {family}: a status call (no model work) takes {r['grpc']['status']['p50_ms']:.2f} ms over gRPC and "
            f"{r['rest']['status']['p50_ms']:.2f} ms over REST at p50, beside {batch64_ms:.2f} ms for 64 images "
            f"in-process ({part_label(parts[0], first)}). The first gRPC request after a version loads takes "
            f"{entry['first_request']['with_warmup_ms']:.1f} ms with the export's warmup records and "
            f"{entry['first_request']['without_warmup_ms']:.1f} ms without, against "
            f"{entry['first_request']['warm_p50_ms']:.2f} ms for a warm one (p50), and "
            f"{entry['first_request']['warm_after_idle_ms']:.1f} ms for a warm one after a second's pause; "
            "target: within 2x of the warm p50 with warmup."
        )
    for family, entry in report["models"].items():
        met = entry["met"]
        verdict = {k: "met" if v else "NOT met" for k, v in met.items()}
        throughput = verdict.get("grpc_batch64_isolated", "not judged (the isolated run needs 2+ cores on Linux)")
        lines.append(
            f"- {family}: latency {verdict['grpc_batch1_p50']}; throughput {throughput}; "
            f"first request {verdict['first_request_with_warmup_within_2x']}."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4], help="callers in flight for throughput (each level)"
    )
    parser.add_argument("--isolated", type=int, default=16, help="callers in flight for the isolated run")
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
