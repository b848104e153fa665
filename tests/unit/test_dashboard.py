"""The run state the coordinator keeps, and the dashboard's server, without training or a browser."""

from __future__ import annotations

import doctest
import http.client
import importlib
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import keras_tuner as kt
import orjson
import pytest

from fmtune import config, layout, run_state
from fmtune.dashboard import charts, view
from fmtune.dashboard.server import serving
from fmtune.run.state_writer import StateWriter
from fmtune.run_state import RunState, TrialState
from fmtune.tuning.algorithms import make_oracle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(tmp_path: Path, *assignments: str, clock: Clock | None = None) -> tuple[Any, StateWriter]:
    cfg = config.load(
        "quick",
        None,
        [
            "search.algorithm=random",
            "search.asha.enabled=false",
            "budget_minutes=null",
            f"workdir={tmp_path}",
            "fault_tolerance.heartbeat_seconds=1",
            "fault_tolerance.lease_seconds=10",
            *assignments,
        ],
        environ={},
    )
    oracle = make_oracle(cfg)
    oracle.verbose = 0
    if clock is not None:
        oracle.leases.clock = clock
    oracle.set_project_dir(tmp_path / "oracle", "search")
    hp = kt.HyperParameters()
    hp.Int("units", 8, 4096)
    hp.Float("learning_rate", 1e-4, 1e-1, sampling="log")
    hp.Choice("activation", ["relu", "tanh"])
    oracle.update_space(hp)
    return oracle, StateWriter(cfg, oracle)


def report(oracle: Any, trial: Any, worker: str, epochs: int, end: bool = True) -> None:
    for step in range(epochs):
        value = trial.hyperparameters.values["units"] / 4096 * (step + 1) / epochs
        oracle.update_trial_from(worker, trial.trial_id, {"val_accuracy": value, "loss": 1 - value}, step=step)
    if end:
        trial.status = "COMPLETED"
        oracle.end_trial_from(worker, trial)


@pytest.mark.parametrize(
    "name", ["fmtune.dashboard.importance", "fmtune.dashboard.placement", "fmtune.dashboard.charts"]
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_state_of_1200_trials_costs_little_per_write(tmp_path: Path) -> None:
    """1200 trials of 3 epochs, 128 of them running: a write re-encodes only what changed."""
    oracle, writer = setup(tmp_path, "search.max_trials=1400")
    # The oracle's own files are not what is measured here (and one caller waiting for each write
    # would take minutes): it keeps everything in memory.
    oracle.save = lambda: None
    oracle.save_trial = lambda trial: None
    for i in range(1200):
        report(oracle, oracle.create_trial(f"tuner{i % 128}"), f"tuner{i % 128}", 3)
    running = [oracle.create_trial(f"tuner{i}") for i in range(128)]
    started = time.perf_counter()
    writer.update(force=True)
    first = time.perf_counter() - started
    costs = []
    for trial in running[:64]:  # an epoch from half the running trials, one finishes
        report(oracle, trial, oracle.holder(trial.trial_id), 1, end=False)
    for _ in range(5):
        started = time.perf_counter()
        writer.update(force=True)
        costs.append(time.perf_counter() - started)
    locked = []
    for _ in range(5):
        started = time.perf_counter()
        oracle.live_view(set(writer.trials.watched), writer.trials.started, writer.trials.ended, False)
        locked.append(time.perf_counter() - started)
    size = (writer.experiment_dir / layout.STATE).stat().st_size
    print(
        f"state of 1328 trials ({size / 1e6:.2f} MB): first write {first * 1000:.1f} ms, "
        f"then {min(costs) * 1000:.1f}-{max(costs) * 1000:.1f} ms per write, "
        f"{max(locked) * 1000:.2f} ms under the oracle's lock"
    )
    state = run_state.load(writer.experiment_dir)
    assert state is not None and len(state.trials) == 1328
    assert state.trials_finished == 1200 and state.trials_running == 128
    assert sum(t.status == "RUNNING" for t in state.trials) == 128
    assert [e.epoch for e in state.trials[0].history] == [0, 1, 2]
    assert max(costs) < 0.1 and max(locked) < 0.02


def test_a_silent_worker_and_its_requeued_trial(tmp_path: Path) -> None:
    clock = Clock()
    oracle, writer = setup(tmp_path, "search.max_trials=3", clock=clock)
    done = oracle.create_trial("tuner0")
    report(oracle, done, "tuner0", 2)
    lost = oracle.create_trial("tuner1")
    report(oracle, lost, "tuner1", 1, end=False)
    kept = oracle.create_trial("tuner0")
    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None
    workers = {w.worker: w for w in state.workers}
    assert workers["tuner1"].status == "running" and workers["tuner1"].trial_id == lost.trial_id
    assert workers["tuner1"].lease_expires_at is not None
    clock.now += 6  # tuner1 says nothing; tuner0 heartbeats
    oracle.heartbeat(kept.trial_id, "tuner0")
    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None
    assert {w.worker: w.status for w in state.workers} == {"tuner0": "running", "tuner1": "silent"}
    clock.now += 5  # past its lease: the trial goes back to the queue
    oracle.heartbeat(kept.trial_id, "tuner0")
    assert oracle.reap() == ["tuner1"]
    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None
    trials = {t.trial_id: t for t in state.trials}
    assert trials[lost.trial_id].status == "QUEUED"
    assert [r.worker for r in trials[lost.trial_id].requeues] == ["tuner1"]
    assert {w.worker: w.status for w in state.workers}["tuner1"] == "silent"
    assert trials[done.trial_id].status == "COMPLETED" and trials[done.trial_id].worker == "tuner0"
    assert [p.trial_id for p in state.best_history] == [done.trial_id]
    assert state.trials_finished == 1


def test_state_says_which_rung_a_trial_reached_what_stopped_it_and_the_budget_spent(tmp_path: Path) -> None:
    from fmtune.run.budget import Budget

    oracle, writer = setup(tmp_path, "search.max_trials=4", "search.asha.enabled=true", "search.epochs=9")
    oracle.budget = Budget(600, started_at=time.time() - 120, retrain_share=0.5, min_epochs=1)
    good, poor = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
    for trial, worker, score in ((good, "tuner0", 0.9), (poor, "tuner1", 0.1)):
        answer = oracle.update_trial_from(worker, trial.trial_id, {"val_accuracy": score}, step=0)
    assert answer.status == "STOPPED"  # below the first rung's cutoff
    for step in (1, 2):
        oracle.update_trial_from("tuner0", good.trial_id, {"val_accuracy": 0.9}, step=step)
    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None and state.budget is not None
    trials = {t.trial_id: t for t in state.trials}
    assert (trials[poor.trial_id].rung, trials[poor.trial_id].stopped_by) == (0, "Asha")
    assert (trials[good.trial_id].rung, trials[good.trial_id].stopped_by) == (1, None)  # 3 epochs: rung 2 of [1, 3]
    assert state.budget.seconds == 600 and 119 < state.budget.used_seconds < 180
    rows = {r["trial_id"]: r for r in view.build(state, {})["trials"]}
    assert rows[poor.trial_id]["stopped_by"] == "Asha" and rows[poor.trial_id]["rung"] == 0


def sample_state(name: str = "demo", value: str = "relu") -> RunState:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    trials = [
        TrialState(
            trial_id=str(i),
            status="COMPLETED" if i < 5 else "RUNNING",
            worker=f"tuner{i % 2}",
            hyperparameters={
                "units": 32 * (i + 1),
                "learning_rate": 10 ** -(1 + i % 3),
                "activation": value if i % 2 else "tanh",
            },
            score=0.5 + i / 20 if i < 5 else None,
            history=[run_state.Epoch(epoch=e, metrics={"val_accuracy": 0.4 + e / 10}) for e in range(2)],
            started_at=start + timedelta(seconds=10 * i),
            ended_at=start + timedelta(seconds=10 * i + 8) if i < 5 else None,
        )
        for i in range(6)
    ]
    best = [run_state.BestPoint(at=t.ended_at, trial_id=t.trial_id, score=t.score) for t in trials[:5]]  # type: ignore[arg-type]
    return RunState(
        experiment=name,
        config_digest="x",
        max_trials=8,
        objective="val_accuracy",
        trials=trials,
        best_history=best,
        started_at=start,
        updated_at=start + timedelta(seconds=60),
    )


def test_view_and_charts_escape_what_comes_from_trials() -> None:
    evil = "<script>alert(1)</script>"
    built = view.build(sample_state(evil, evil))
    assert built["summary"]["experiment"] == evil  # the page sets it as text
    parallel = built["figures"]["parallel"]["data"][0]["dimensions"]
    (activation,) = [d for d in parallel if d["label"] == "activation"]
    assert evil in activation.pop("ticktext")  # parcoords draws tick labels as plain text
    labels = orjson.dumps(built["figures"]).decode()
    assert "<script>" not in labels
    assert len(built["figures"]["best"]["data"][1]["x"]) == 5
    assert set(built["importance"]) <= {"units", "learning_rate", "activation"} and built["importance"]
    assert abs(sum(built["importance"].values()) - 1) < 1e-9


def request(url: str, method: str = "GET", path: str = "/") -> http.client.HTTPResponse:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path)
    return conn.getresponse()


def test_the_server_answers_only_get_and_only_its_own_paths(tmp_path: Path) -> None:
    run_state.save(sample_state(), tmp_path)
    (tmp_path / "secret.txt").write_text("secret")
    with serving(tmp_path, "127.0.0.1", 0) as server:
        ok = request(server.url, path="/api/view")
        assert ok.status == 200 and ok.getheader("Content-Type") == "application/json"
        body = orjson.loads(ok.read())
        assert [t["trial_id"] for t in body["trials"]] == [str(i) for i in range(6)]
        assert request(server.url, path="/static/plotly.min.js").read()[:200].count(b"plotly") > 0
        for method in ("POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
            answer = request(server.url, method, "/api/view")
            assert answer.status == 405 and answer.getheader("Allow") == "GET", method
        for path in (
            "/secret.txt",
            "/state.json",
            "/../secret.txt",
            "/static/../secret.txt",
            "/static/%2e%2e/secret.txt",
            "/static/",
            "//etc/passwd",
            "/api/view/../../secret.txt",
        ):
            answer = request(server.url, path=path)
            assert answer.status == 404 and b"secret" not in answer.read(), path
        page = request(server.url).read().decode()
        assert "/static/plotly.min.js" in page and "cdn" not in page.lower()


def test_an_unchanged_state_is_not_sent_again(tmp_path: Path) -> None:
    run_state.save(sample_state(), tmp_path)
    with serving(tmp_path, "127.0.0.1", 0) as server:
        first = request(server.url, path="/api/view")
        etag = first.getheader("ETag")
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
        conn.request("GET", "/api/view", headers={"If-None-Match": str(etag)})
        assert conn.getresponse().status == 304
        time.sleep(0.01)
        run_state.save(sample_state("other"), tmp_path)
        conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
        conn.request("GET", "/api/view", headers={"If-None-Match": str(etag)})
        again = conn.getresponse()
        assert again.status == 200 and orjson.loads(again.read())["summary"]["experiment"] == "other"


def test_charts_skip_values_every_trial_shares() -> None:
    dims = charts.parallel_coordinates(sample_state())["data"][0]["dimensions"]
    assert [d["label"] for d in dims] == ["activation", "learning_rate (log10)", "units", "val_accuracy"]
