"""Running the real `fmtune` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..conftest import CLASSIC, SYNTHETIC

TINY = [
    *CLASSIC,
    f"dataset={SYNTHETIC}",
    "search.epochs=2",
    "search.early_stopping_patience=0",
    "search.hyperparameters.units=[32, 64]",
    "search.hyperparameters.batch_size=[32]",
    "search.hyperparameters.learning_rate=[0.005, 0.01]",
    "retrain.max_epochs=3",
    "retrain.patience=1",
]


def tune_argv(data_dir: Path, workdir: Path, *extra: str, trials: int = 4, workers: int = 2) -> list[str]:
    sets = [arg for assignment in TINY for arg in ("--set", assignment)]
    return [
        sys.executable,
        "-m",
        "fmtune",
        "tune",
        "--preset",
        "quick",
        *sets,
        "--data-dir",
        str(data_dir.parent),
        "--workdir",
        str(workdir / "runs"),
        "--model-repo",
        str(workdir / "models"),
        "--name",
        "itest",
        "--max-trials",
        str(trials),
        "--workers",
        str(workers),
        *extra,
    ]


def env() -> dict[str, str]:
    """The environment a test's fmtune process gets: the caller's without its ``FMTUNE_*`` settings
    (a developer's FMTUNE_DATA_DIR would replace a test's synthetic data), so a test sets its own."""
    own = {k: v for k, v in os.environ.items() if not k.startswith("FMTUNE_")}
    return {**own, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200"}


def role_env(tuner_id: str, port: int) -> dict[str, str]:
    """A coordinator's or worker's environment, as the chart and the launcher give it."""
    return {
        **env(),
        "KERASTUNER_TUNER_ID": tuner_id,
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(port),
        # No dashboard: on a port of its own choosing it could take the oracle's, free until bound.
        "FMTUNE_DASHBOARD_PORT": "off",
    }


def run(
    argv: list[str], cwd: Path, timeout: float = 300, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {**env(), **(extra_env or {})}
    return subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)


def free_ports(count: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def serve_argv(repo: Path, grpc_port: int, rest_port: int, poll_seconds: float = 1.0) -> list[str]:
    """`fmtune serve --builtin` on loopback, as tests and benchmarks start it."""
    return [
        sys.executable,
        "-m",
        "fmtune",
        "serve",
        "--builtin",
        "--model-repo",
        str(repo),
        "--host",
        "127.0.0.1",
        "--grpc-port",
        str(grpc_port),
        "--rest-port",
        str(rest_port),
        "--poll-seconds",
        str(poll_seconds),
    ]


class Served:
    """A running ``fmtune serve --builtin`` process and its targets."""

    def __init__(self, repo: Path, proc: subprocess.Popen[str], grpc_port: int, rest_port: int):
        self.repo, self.proc = repo, proc
        self.grpc_target, self.rest_target = f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}"
        self.rest_port = rest_port

    def alive(self) -> bool:
        return self.proc.poll() is None

    def reset_peak_memory(self) -> None:
        """Start VmHWM again from the current resident set (Linux's clear_refs)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def memory_kib(self) -> dict[str, int]:
        """The process's resident set now (VmRSS) and at its peak since the last reset (VmHWM), from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                fields[key] = int(value.split()[0])
        return fields


@contextmanager
def running_server(repo: Path) -> Iterator[Served]:
    """`fmtune serve --builtin` in its own process, ready (version AVAILABLE) on return."""
    from fmtune.client import FmtuneClient

    grpc_port, rest_port = free_ports(2)
    proc = subprocess.Popen(
        serve_argv(repo, grpc_port, rest_port, poll_seconds=0.2),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Served(repo, proc, grpc_port, rest_port)
    try:
        with FmtuneClient(server.grpc_target) as client:
            client.wait_until_ready(timeout=120)
        yield server
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        print(out[-3000:])


TINY_MLP = {"num_layers": 1, "units_0": 16, "dropout_0": 0.1, "learning_rate": 1e-3, "batch_size": 32}


def tiny_card(model_name: str = "fmtune", family: str = "mlp", values: dict[str, Any] | None = None) -> Any:
    from fmtune.export import ModelCard

    return ModelCard(
        model_name=model_name,
        dataset="synthetic",
        class_names=[f"class{i}" for i in range(10)],
        input_shape=[28, 28],
        family=family,
        hyperparameters=TINY_MLP if values is None else values,
        config_digest="test",
        experiment="test",
    )


def tiny_repo(into: Path) -> Path:
    """A model repository holding one untrained tiny MLP as version 1 (with warmup records)."""
    from fmtune import export
    from fmtune.config import SearchConfig
    from fmtune.models.plugins import build_from_values

    repo = into / "models"
    model, _ = build_from_values(SearchConfig(), TINY_MLP, (28, 28), 10)
    export.publish(model, repo, tiny_card())
    return repo


def wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str], poll: float = 0.05) -> None:
    """Poll ``condition`` until it holds, or raise AssertionError with ``what()`` after ``timeout``
    seconds: a slow machine then fails saying what never happened, not with a later puzzle."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what()}")
        time.sleep(poll)


@contextmanager
def ready_process(argv: list[str], log_path: Path, ready_url: str, timeout: float, **popen: Any) -> Iterator[None]:
    """A real server in its own process (Prometheus, MLflow), once ``ready_url`` answers 200, its
    output in ``log_path``; stopped on leaving (terminated, killed if it lingers)."""
    import httpx

    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen)
        try:
            deadline = time.monotonic() + timeout
            while True:
                assert proc.poll() is None, f"{argv[0]} exited: " + log_path.read_text()[-3000:]
                try:
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{argv[0]} was not ready in {timeout:.0f}s: {ready_url}"
                time.sleep(0.2)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
