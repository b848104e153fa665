"""Coordinator capacity: many simulated workers against the real coordinator over gRPC, fmtune's
and vanilla Keras Tuner's chief side by side.

Each simulated worker asks for a trial, reports three epochs of synthetic metrics and ends it,
with no training, so the coordinator is the only thing being measured. Workers are threads spread
over a few processes (so the simulators' own GIL is not the bottleneck). A create-trial's latency
runs from the first ask to a trial to run, across IDLE answers ("ask again").

Run with `make bench` (python -m tests.bench.capacity). Writes reports/capacity.json and .md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

COMMAND = "make bench  (python -m tests.bench.capacity)"
REPORTS_PER_TRIAL = 3
TOKEN = "capacity-bench"  # fmtune's chief asks for it (Keras Tuner's ignores it)


def simulate(port: int, worker_ids: list[str], queue: Any, start: Any) -> None:
    """One process: a thread per worker id; puts (create latencies, update latencies, trials) on queue."""
    import grpc
    from keras_tuner.src import protos

    from fmtune.tuning.auth import call_metadata
    from fmtune.tuning.headers import CALLER

    service = protos.get_service()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = protos.get_service_grpc().OracleStub(channel)
    creates: list[tuple[int, float]] = []  # (trial index, seconds)
    updates: list[float] = []
    done = [0]
    span = [float("inf"), 0.0]  # wall-clock time of this process's first answer and last trial's end
    lock = threading.Lock()

    def worker(tuner_id: str) -> None:
        meta = ((CALLER, tuner_id), *call_metadata(TOKEN))
        rng = random.Random(tuner_id)
        first = True  # the first call also waits for the coordinator to come up: not counted
        started = time.perf_counter()
        while True:
            try:
                trial = stub.CreateTrial(
                    service.CreateTrialRequest(tuner_id=tuner_id), metadata=meta, wait_for_ready=True, timeout=120
                ).trial
            except grpc.RpcError:  # joined after the search ended and the coordinator left
                return
            latency = time.perf_counter() - started
            with lock:  # from the first answer: waiting for the coordinator to start is not its time
                span[0] = min(span[0], time.time())
            if trial.status == protos.get_proto().TrialStatus.STOPPED:
                return
            if trial.status == protos.get_proto().TrialStatus.IDLE:
                time.sleep(0.01)
                continue  # still the same create-trial, as far as the worker is concerned
            mine = []
            for step in range(REPORTS_PER_TRIAL):
                t0 = time.perf_counter()
                stub.UpdateTrial(
                    service.UpdateTrialRequest(
                        trial_id=trial.trial_id, metrics={"val_accuracy": rng.random(), "loss": rng.random()}, step=step
                    ),
                    metadata=meta,
                    timeout=600,
                )
                mine.append(time.perf_counter() - t0)
            trial.status = protos.get_proto().TrialStatus.COMPLETED
            stub.EndTrial(service.EndTrialRequest(trial=trial), metadata=meta, timeout=600)
            with lock:
                if not first:
                    creates.append((int(trial.trial_id), latency))
                first = False
                updates.extend(mine)
                done[0] += 1
                span[1] = max(span[1], time.time())
            started = time.perf_counter()

    start.wait(timeout=600)
    cpu = time.process_time()
    threads = [threading.Thread(target=worker, args=(tid,)) for tid in worker_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((creates, updates, done[0], span, time.process_time() - cpu))


def cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user + system), from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def coordinator_argv(impl: str, algorithm: str, trials: int, data_dir: Path, workdir: Path) -> list[str]:
    from fmtune import config

    workdir.mkdir(parents=True, exist_ok=True)
    if impl == "keras-tuner":
        return [sys.executable, "-m", "tests.bench.vanilla_chief", algorithm, str(trials), str(workdir)]
    cfg = config.load(
        "quick",
        None,
        [
            "budget_minutes=null",
            "search.asha.enabled=false",
            "dataset=synthetic",
            f"data_dir={data_dir}",
            f"workdir={workdir}",
            f"name={algorithm}-{trials}",
            f"search.algorithm={algorithm}",
            f"search.max_trials={trials}",
            "retrain.enabled=false",
            "fault_tolerance.lease_seconds=600",
        ],
        environ={},
    )
    path = workdir / f"{cfg.name}.yaml"
    path.write_text(cfg.to_yaml())
    return [sys.executable, "-m", "fmtune", "coordinator", "--resolved", str(path)]


def start_coordinator(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start the chief on a free port and wait until it listens; a port taken between choosing and
    binding it (by one of the simulators' own connections) means trying another."""
    import socket

    from tests.integration.helpers import free_ports

    for _ in range(5):
        (port,) = free_ports(1)
        env = {
            **os.environ,
            "KERASTUNER_TUNER_ID": "chief",
            "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(port),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "FMTUNE_ORACLE_TOKEN": TOKEN,
        }
        coordinator = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while coordinator.poll() is None and time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return coordinator, port
            time.sleep(0.2)
        coordinator.kill()
    raise SystemExit(f"the coordinator did not start: {argv}")


def window(creates: list[tuple[int, float]], upto: int, width: int = 20) -> list[float]:
    """Create latencies of the trials handed out just before ``upto`` trials existed."""
    return [s for index, s in creates if upto - width <= index < upto]


def run_case(impl: str, algorithm: str, workers: int, trials: int, data_dir: Path, workdir: Path) -> dict[str, Any]:
    argv = coordinator_argv(impl, algorithm, trials, data_dir, workdir / f"{impl}-{algorithm}-{workers}-{trials}")
    coordinator, port = start_coordinator(argv)
    exited: list[float] = []

    cpu: dict[str, float | None] = {}

    def wait_exit() -> None:
        # Exited but not yet reaped, so its CPU time can still be read.
        os.waitid(os.P_PID, coordinator.pid, os.WEXITED | os.WNOWAIT)
        exited.append(time.time())
        cpu["end"] = cpu_seconds(coordinator.pid)
        coordinator.wait()

    waiter = threading.Thread(target=wait_exit)
    waiter.start()
    processes = min(4, workers)
    ids = [f"sim{i}" for i in range(workers)]
    ctx = mp.get_context("spawn")
    queue: Any = ctx.Queue()
    start = ctx.Barrier(processes + 1)
    sims = [ctx.Process(target=simulate, args=(port, ids[p::processes], queue, start)) for p in range(processes)]
    for sim in sims:
        sim.start()
    start.wait(timeout=600)
    cpu["start"] = cpu_seconds(coordinator.pid)  # after its start-up, before the first call
    parts = [queue.get(timeout=1800) for _ in sims]
    # From the first request to the last trial's end: process start-up is not the coordinator's time.
    first, last = min(p[3][0] for p in parts), max(p[3][1] for p in parts)
    waiter.join(timeout=120)
    for sim in sims:
        sim.join()
    creates = [x for p in parts for x in p[0]]
    latencies = [s for _, s in creates]
    updates = [x for p in parts for x in p[1]]
    completed = sum(p[2] for p in parts)
    if not latencies:
        raise SystemExit(f"{impl} {algorithm} with {workers} workers: no trial was handed out (coordinator: {argv})")
    per_trial = statistics.fmean(latencies) + REPORTS_PER_TRIAL * statistics.fmean(updates)
    row = {
        "coordinator": impl,
        "algorithm": algorithm,
        "workers": workers,
        "trials": completed,
        "seconds": last - first,
        "trials_per_s": completed / (last - first),
        "create_p50_ms": 1000 * percentile(latencies, 0.5),
        "create_p95_ms": 1000 * percentile(latencies, 0.95),
        "update_p50_ms": 1000 * percentile(updates, 0.5),
        "update_p95_ms": 1000 * percentile(updates, 0.95),
        "overhead_share_of_60s_trial": per_trial / 60.0,
        "exit_after_last_trial_s": (exited[0] - last) if exited else None,
        # CPU per trial from the first call to the chief's exit: the chief's own, and what the
        # simulators took from the same cores (real workers run elsewhere).
        "chief_cpu_ms_per_trial": (
            1000 * (cpu["end"] - cpu["start"]) / completed if None not in (cpu.get("start"), cpu.get("end")) else None
        ),
        "simulator_cpu_ms_per_trial": 1000 * sum(p[4] for p in parts) / completed,
    }
    if algorithm == "bayesian":
        for at in (50, 200):
            if at <= trials:
                row[f"create_p50_ms_at_{at}"] = 1000 * percentile(window(creates, at), 0.5)
                row[f"create_p95_ms_at_{at}"] = 1000 * percentile(window(creates, at), 0.95)
    return row


CASES = [("random", 8, 300), ("random", 32, 600), ("random", 128, 1200), ("bayesian", 8, 200)]
IMPLEMENTATIONS = ("keras-tuner", "fmtune")


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    rows = report["cases"]
    lines = [
        "# Coordinator capacity",
        "",
        f"Command: `{COMMAND}`. Machine: {report['machine']}. Simulated workers (threads in up to 4 processes, "
        f"started together once all are loaded) against the real chief over gRPC, {REPORTS_PER_TRIAL} reports per "
        "trial, no training; vanilla Keras Tuner's chief (its oracle and server loop) and fmtune's coordinator, "
        "same search space, same run. CPU per trial: from the first call to the chief's exit; the simulators "
        "share the chief's cores here, where real workers run on other machines.",
        "",
        "| coordinator | algorithm | workers | trials | trials/s | create p50 (ms) | create p95 (ms) "
        "| update p50 (ms) | update p95 (ms) | overhead per 60 s trial | exit after last trial (s) "
        "| chief CPU per trial (ms) | simulators' CPU per trial (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['coordinator']} | {r['algorithm']} | {r['workers']} | {r['trials']} | {fmt(r['trials_per_s'])} | "
            f"{fmt(r['create_p50_ms'])} | {fmt(r['create_p95_ms'])} | {fmt(r['update_p50_ms'])} | "
            f"{fmt(r['update_p95_ms'])} | {fmt(100 * r['overhead_share_of_60s_trial'], 2)}% | "
            f"{fmt(r['exit_after_last_trial_s'])} | {fmt(r.get('chief_cpu_ms_per_trial'), 2)} | "
            f"{fmt(r.get('simulator_cpu_ms_per_trial'), 2)} |"
        )
    bayes = [r for r in rows if r["algorithm"] == "bayesian"]
    if bayes:
        lines += [
            "",
            "Bayesian create-trial latency around 50 and 200 completed trials (the 20 trials handed out before):",
            "",
            "| coordinator | workers | p50 at 50 (ms) | p95 at 50 (ms) | p50 at 200 (ms) | p95 at 200 (ms) |",
            "|---|---|---|---|---|---|",
        ]
        for r in bayes:
            lines.append(
                f"| {r['coordinator']} | {r['workers']} | {fmt(r.get('create_p50_ms_at_50'))} | "
                f"{fmt(r.get('create_p95_ms_at_50'))} | {fmt(r.get('create_p50_ms_at_200'))} | "
                f"{fmt(r.get('create_p95_ms_at_200'))} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--quick", action="store_true", help="smaller cases (a smoke run)")
    parser.add_argument("--only", choices=IMPLEMENTATIONS, help="one coordinator only")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.conftest import write_dataset

    work = Path(tempfile.mkdtemp(prefix="fmtune-capacity-"))
    data_dir = write_dataset(work / "data" / "synthetic").parent
    cases = [(a, w, max(2 * w, t // 10)) for a, w, t in CASES] if args.quick else CASES
    rows = []
    for algorithm, workers, trials in cases:
        for impl in [args.only] if args.only else IMPLEMENTATIONS:
            rows.append(run_case(impl, algorithm, workers, trials, data_dir, work / "runs"))
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "command": COMMAND,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "reports_per_trial": REPORTS_PER_TRIAL,
        "cases": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "capacity.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "capacity.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
