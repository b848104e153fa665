"""The local launcher: a killed worker comes back under its id; Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fmtune import results

from .helpers import env, tune_argv

pytestmark = pytest.mark.timeout(600)


def descendants(pid: int) -> dict[int, str]:
    """pid -> KERASTUNER_TUNER_ID of every process below ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                ids = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"KERASTUNER_TUNER_ID=")]
                found[child] = ids[0] if ids else ""
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_until(proc: subprocess.Popen[str], pattern: str, seen: list[str], timeout: float = 180) -> re.Match[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"never saw {pattern!r}:\n{''.join(seen[-40:])}")


def start(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_worker_is_restarted_under_its_id(synthetic_dir: Path, tmp_path: Path) -> None:
    argv = tune_argv(synthetic_dir, tmp_path, "--set", "search.epochs=6", "--set", "search.algorithm=random", trials=4)
    proc = start(argv, tmp_path)
    seen: list[str] = []
    try:
        match = read_until(proc, r"\[tuner1\] \S+ trial (\d) epoch 1/6", seen)
        victims = [pid for pid, tid in descendants(proc.pid).items() if tid == "tuner1"]
        assert victims, "no tuner1 process found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        assert proc.stdout is not None
        seen += proc.stdout.readlines()
        assert proc.wait(timeout=300) == 0, "".join(seen[-60:])
    finally:
        proc.kill()
    out = "".join(seen)
    assert re.search(r"\[fmtune\] tuner1 exited with -9; restarting it under the same id \(1/3\)", out)
    assert f"tuner1 came back: it re-runs trial {match.group(1)} from the start" in out
    res = results.load(tmp_path / "runs" / "itest" / "results.json")
    assert len(res.trials) == 4 and all(t.status == "COMPLETED" for t in res.trials)
    rerun = next(t for t in res.trials if t.trial_id == match.group(1))
    assert rerun.worker == "tuner1"
    # Only the re-run's epochs count: one value per epoch, not the killed run's mixed in.
    assert [h.epoch for h in rerun.history] == list(range(len(rerun.history)))


def test_ctrl_c_stops_every_process(synthetic_dir: Path, tmp_path: Path) -> None:
    argv = tune_argv(synthetic_dir, tmp_path, "--set", "search.epochs=50", trials=20)
    proc = start(argv, tmp_path)
    seen: list[str] = []
    try:
        read_until(proc, r"\[tuner\d\] \S+ trial \d+ epoch 1/50", seen)
        children = descendants(proc.pid)
        assert {"chief", "tuner0", "tuner1"} <= set(children.values())
        proc.send_signal(signal.SIGINT)
        assert proc.stdout is not None
        seen += proc.stdout.readlines()
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    assert "interrupted: stopping all processes" in "".join(seen)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.2)
    assert not [pid for pid in children if alive(pid)]
