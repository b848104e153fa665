"""The tracking settings, and a tracker facing a tracking server that is not there: it never holds up
its caller, and says so once however often it tries."""

from __future__ import annotations

import importlib.util
import logging
import socket
import time
from pathlib import Path

import pytest

from fmtune import config, run_state
from fmtune.config import ConfigError
from fmtune.run.tracking import Tracker, tracked, tracking_uri
from fmtune.run_state import RunState


def load(tmp_path: Path, *sets: str) -> config.ExperimentConfig:
    return config.load("quick", None, [f"workdir={tmp_path}", "name=tracked", *sets], environ={})


def test_the_config_wins_over_the_environment_and_nothing_set_is_no_tracking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    plain = load(tmp_path)
    assert tracking_uri(plain, {}) is None
    assert tracking_uri(plain, {"MLFLOW_TRACKING_URI": "http://env:5000"}) == "http://env:5000"
    mine = load(tmp_path, "tracking.mlflow_uri=http://cfg:5000")
    assert tracking_uri(mine, {"MLFLOW_TRACKING_URI": "http://env:5000"}) == "http://cfg:5000"
    with tracked(plain) as tracker:  # nothing set: no thread, nothing to close
        assert tracker is None


def test_tracking_is_not_part_of_what_defines_the_experiment(tmp_path: Path) -> None:
    plain, mine = load(tmp_path), load(tmp_path, "tracking.mlflow_uri=http://cfg:5000", "tracking.sync_seconds=1")
    assert mine.digest() == plain.digest() and mine.outcome_digest() == plain.outcome_digest()


@pytest.mark.parametrize("bad", ["tracking.sync_seconds=0", "tracking.mlflow_uri=''", "tracking.uri=x"])
def test_bad_tracking_settings_are_named(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, bad)
    assert any(p.startswith("tracking.") for p in caught.value.problems), caught.value.problems


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="MLflow is not installed (the dev extra)")
def test_an_unreachable_server_is_said_once_and_holds_nothing_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    cfg = load(tmp_path, f"tracking.mlflow_uri={uri}", "tracking.sync_seconds=0.2")
    state = RunState(experiment=cfg.name, config_digest=cfg.digest(), max_trials=2, objective="val_accuracy")
    run_state.save(state, cfg.experiment_dir)
    caplog.set_level(logging.INFO)
    tracker = Tracker(cfg, uri)
    began = time.monotonic()
    tracker.start()
    assert time.monotonic() - began < 0.5  # the caller goes on at once
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not tracker._down:
        time.sleep(0.1)
    time.sleep(2)  # more attempts, each refused
    tracker.close(timeout=30)
    said = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING and uri in said[0].getMessage()
    assert tracker._down and not (tmp_path / "tracked" / "tracking.json").exists()
    # MLflow's and urllib3's own lines about each refused call (retries, tracebacks) stay out.
    assert not [r for r in caplog.records if r.threadName == "mlflow-tracking" and r.name != "fmtune"]
