"""One machine, no cluster: the coordinator and N workers as separate local processes on loopback.

Each child's output is streamed with a ``[name]`` prefix. A worker that crashes is restarted under
the same id (Keras Tuner then hands it back its unfinished trial). Ctrl-C, SIGTERM, or the death of
this process stops every child: they run in their own sessions with a parent-death signal set.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from fmtune import logs, run_state
from fmtune.tuning import auth
from fmtune.tuning.roles import CHIEF, Role, worker_id

PR_SET_PDEATHSIG = 1
# TensorFlow's native start-up chatter (absl info/warning lines, and CUDA probing on CPU-only
# machines), which TF_CPP_MIN_LOG_LEVEL no longer silences.
NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog|[IW]\d{4} \S+ +\d+ \S+\] |"
    r"E\d{4} \S+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit)"
)
STOP_GRACE_SECONDS = 10.0
WORKER_EXIT_GRACE_SECONDS = 15.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ProgressBar:
    """Trials finished out of max_trials and the best so far, below the streamed output (TTY only),
    read from the coordinator's state.json."""

    def __init__(self, experiment_dir: Path, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.experiment_dir = experiment_dir
        self.progress = Progress(
            TextColumn("trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task("search", total=total, best="n/a")

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def write(self, line: str) -> None:
        self.progress.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def refresh(self) -> None:
        state = run_state.load(self.experiment_dir)
        if state is not None:
            best = "n/a" if state.best_score is None else f"{state.best_score:.4f}"
            self.progress.update(self.task, completed=state.trials_finished, total=state.max_trials, best=best)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    pump: threading.Thread | None = field(default=None, repr=False)


class LocalCluster:
    """Runs the processes of one search and returns the coordinator's exit code."""

    def __init__(
        self,
        config_path: Path,
        experiment_dir: Path,
        workers: int,
        port: int,
        threads_per_worker: int = 1,
        max_restarts: int = 3,
        out: TextIO | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.out = out or sys.stdout
        self.experiment_dir = experiment_dir
        self.max_restarts = max_restarts
        self._lock = threading.Lock()
        self._stopping = False  # set by a signal handler: a plain flag, since handlers can nest
        self.bar: ProgressBar | None = None
        self.json_lines = os.environ.get(logs.FORMAT_ENV) == "json"  # set by the command, inherited below
        # A secret for this run's processes alone: the coordinator's; each worker has only its own
        # credential, made from it, so a worker's code cannot report as another worker.
        secret = auth.new_token()
        given = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
        base = {k: v for k, v in given.items() if k not in auth.SECRET_VARS}
        cmd = [sys.executable, "-m", "fmtune"]
        chief = Role(CHIEF, "127.0.0.1", port)
        self.coordinator = Child(
            "coordinator",
            [*cmd, "coordinator", "--resolved", str(config_path), "--trial-threads", str(threads_per_worker)],
            {**base, **chief.env(), auth.TOKEN_ENV: secret},
        )
        self.workers = [
            Child(
                tid,
                [*cmd, "worker", "--resolved", str(config_path), "--threads", str(threads_per_worker)],
                {
                    **base,
                    **Role(tid, "127.0.0.1", port).env(),
                    auth.CREDENTIAL_ENV: auth.worker_credential(secret, tid),
                },
            )
            for tid in (worker_id(i) for i in range(workers))
        ]

    def say(self, name: str, line: str) -> None:
        text = f"[{name}] {line.rstrip()}"
        if self.json_lines:  # one object a line, which says who wrote it
            if not line.strip():
                return
            role = {"fmtune": "launcher", "coordinator": "coordinator"}.get(name, "worker")
            text = logs.as_json_line(line, role=role, **({"worker": name} if role == "worker" else {}))
        with self._lock:
            if self.bar is not None:
                self.bar.write(text)
                return
            self.out.write(text + "\n")
            self.out.flush()

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(
            child.argv,
            env=child.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        child.pump = threading.Thread(target=self._pump, args=(child, child.proc), daemon=True)
        child.pump.start()

    def _pump(self, child: Child, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            if not NATIVE_NOISE.match(line):
                self.say(child.name, line)

    def _children(self) -> list[Child]:
        return [self.coordinator, *self.workers]

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def run(self, progress_total: int | None = None) -> int:
        """Run to the end; with ``progress_total`` and a terminal, show a progress bar of trials."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        bar = ProgressBar(self.experiment_dir, progress_total) if progress_total and self.out.isatty() else None
        try:
            if bar is not None:
                self.bar = bar.__enter__()
            for child in self._children():
                self._start(child)
            return self._supervise()
        finally:
            self._stop_all()
            if bar is not None:
                bar.__exit__()
                self.bar = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _supervise(self) -> int:
        while not self._stopping:
            time.sleep(0.2)
            if self.bar is not None:
                self.bar.refresh()
            assert self.coordinator.proc is not None
            code = self.coordinator.proc.poll()
            if code is not None:
                self._await_workers()
                return code
            for child in self.workers:
                self._maybe_restart(child)
        self.say("fmtune", "interrupted: stopping all processes")
        return 130

    def _maybe_restart(self, child: Child) -> None:
        assert child.proc is not None
        code = child.proc.poll()
        if code is None or code == 0 or child.restarts < 0:
            return
        if child.restarts >= self.max_restarts:
            self.say("fmtune", f"{child.name} exited with {code}; not restarting after {child.restarts} restarts")
            child.restarts = -1
            return
        child.restarts += 1
        self.say(
            "fmtune",
            f"{child.name} exited with {code}; restarting it under the same id ({child.restarts}/{self.max_restarts})",
        )
        self._start(child)

    def _await_workers(self) -> None:
        """Workers leave by themselves once told the search is over; give them a moment."""
        deadline = time.monotonic() + WORKER_EXIT_GRACE_SECONDS
        for child in self.workers:
            if child.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))

    def _stop_all(self) -> None:
        live = [c.proc for c in self._children() if c.proc is not None and c.proc.poll() is None]
        for proc in live:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        for child in self._children():
            if child.pump is not None:
                child.pump.join(timeout=2)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
