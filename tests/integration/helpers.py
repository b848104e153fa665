"""Running the real `fmtune` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..conftest import SYNTHETIC

TINY = [
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
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200"}


def run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


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
