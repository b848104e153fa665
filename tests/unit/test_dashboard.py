"""The dashboard's view, charts and server, without training or a browser (the server with real
sockets)."""

from __future__ import annotations

import doctest
import http.client
import importlib
import itertools
import math
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fmtune import run_state
from fmtune.dashboard import charts, view
from fmtune.dashboard.placement import PlacementError, pinned, resolve
from fmtune.dashboard.server import CONNECTION_THREAD, Limits, plotly_js, serving
from fmtune.run_state import Deployment, Phase, RunState
from fmtune.trials import Epoch, TrialRecord


@pytest.mark.parametrize(
    "name",
    [
        "fmtune.dashboard.importance",
        "fmtune.dashboard.placement",
        "fmtune.dashboard.charts",
        "fmtune.dashboard.view",
    ],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def sample_state(name: str = "demo", value: str = "relu") -> RunState:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    trials = [
        TrialRecord(
            trial_id=str(i),
            status="COMPLETED" if i < 5 else "RUNNING",
            worker=f"tuner{i % 2}",
            hyperparameters={
                "units": 32 * (i + 1),
                "learning_rate": 10 ** -(1 + i % 3),
                "activation": value if i % 2 else "tanh",
            },
            score=0.5 + i / 20 if i < 5 else None,
            history=[Epoch(epoch=e, metrics={"val_accuracy": 0.4 + e / 10}) for e in range(2)],
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


def test_metrics_read_the_record_once_per_change_of_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Prometheus scraping every few seconds costs a stat, not a parse of state.json."""
    from fmtune.dashboard import server as dashboard_server

    reads: list[Path] = []
    real = run_state.for_experiment
    monkeypatch.setattr(dashboard_server.run_state, "for_experiment", lambda d: reads.append(d) or real(d))
    run_state.save(sample_state(), tmp_path)
    with serving(tmp_path, "127.0.0.1", 0) as server:
        pages = [request(server.url, path="/metrics").read().decode() for _ in range(3)]
        request(server.url, path="/api/view").read()
        assert len(reads) == 1 and all("fmtune_trials{" in page for page in pages)
        time.sleep(0.01)
        run_state.save(sample_state("other"), tmp_path)
        request(server.url, path="/metrics").read()
        assert len(reads) == 2


def test_charts_skip_values_every_trial_shares() -> None:
    dims = charts.parallel_coordinates(sample_state())["data"][0]["dimensions"]
    assert [d["label"] for d in dims] == ["activation", "learning_rate (log10)", "units", "val_accuracy"]


# -- the server: no client can hold the coordinator's threads ------------------------------------


def handler_threads() -> int:
    """Threads serving a dashboard connection."""
    return sum(t.name == CONNECTION_THREAD for t in threading.enumerate())


def eventually(check: Callable[[], bool], within: float) -> float:
    """Seconds until ``check()`` holds; fails after ``within``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"not within {within}s"
        time.sleep(0.05)
    return time.monotonic() - started


def address_of(server: Any) -> tuple[str, int]:
    host, port = server.server_address[:2]
    return str(host), int(port)


def read_to_end(sock: socket.socket, within: float) -> bytes:
    """What the server sends until it closes the connection (a reset counts as closed)."""
    sock.settimeout(within)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def test_idle_connections_beyond_the_limit_pin_no_thread_and_are_closed_in_time(tmp_path: Path) -> None:
    run_state.save(sample_state(), tmp_path)
    limits = Limits(connections=4, request_seconds=1.0, write_seconds=2.0)
    with serving(tmp_path, "127.0.0.1", 0, limits) as server:
        address = address_of(server)
        idle = [socket.create_connection(address, timeout=10) for _ in range(12)]  # and they send nothing
        eventually(lambda: handler_threads() == 4, within=2)
        time.sleep(0.2)
        assert handler_threads() == 4  # the eight over the limit hold no thread
        answers = [read_to_end(s, within=5) for s in idle]  # each is closed by the server...
        busy = [a for a in answers if a.startswith(b"HTTP/1.0 503")]
        assert len(busy) == 8 and answers.count(b"") == 4, answers  # ...at once, or at the deadline
        eventually(lambda: handler_threads() == 0, within=2)
        for s in idle:
            s.close()
        # New clients are served, as many at once as the limit allows.
        conns = [http.client.HTTPConnection(*address, timeout=10) for _ in range(4)]
        for conn in conns:
            conn.request("GET", "/api/view")
        assert [c.getresponse().status for c in conns] == [200] * 4


def test_a_request_that_trickles_in_is_cut_at_its_deadline(tmp_path: Path) -> None:
    """A byte every 0.2 s never trips a per-read timeout; the request's deadline still ends it."""
    run_state.save(sample_state(), tmp_path)
    with serving(tmp_path, "127.0.0.1", 0, Limits(connections=2, request_seconds=1.0)) as server:
        sock = socket.create_connection(address_of(server), timeout=10)
        sock.sendall(b"GET /api/view HTTP/1.0\r\n")
        started = time.monotonic()
        with pytest.raises(OSError):  # a broken pipe or a reset, once the server has closed it
            for _ in range(50):
                sock.sendall(b"X")
                time.sleep(0.2)
        assert time.monotonic() - started < 3
        assert read_to_end(sock, within=2) == b""
        eventually(lambda: handler_threads() == 0, within=2)
        sock.close()


def test_a_client_that_never_reads_plotly_does_not_hold_its_thread_past_the_deadline(tmp_path: Path) -> None:
    run_state.save(sample_state(), tmp_path)
    whole = len(plotly_js())
    with serving(tmp_path, "127.0.0.1", 0, Limits(connections=4, write_seconds=1.0)) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the send must wait
        sock.connect(address_of(server))
        sock.sendall(b"GET /static/plotly.min.js HTTP/1.0\r\nHost: x\r\n\r\n")
        eventually(lambda: handler_threads() == 1, within=2)
        # It reads nothing: the server's send blocks, until the deadline closes the connection.
        assert eventually(lambda: handler_threads() == 0, within=4) < 3.5
        got = read_to_end(sock, within=5)
        assert got.startswith(b"HTTP/1.0 200") and len(got) < whole  # cut short, not sent
        sock.close()
        assert request(server.url, path="/static/plotly.min.js").read()[:200].count(b"plotly") > 0


def test_a_view_slower_to_make_than_the_request_deadline_is_still_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's deadline is the client's time to send it; the server's own work does not count."""
    from fmtune.dashboard.server import ExperimentSource

    run_state.save(sample_state(), tmp_path)
    made = ExperimentSource.current

    def slowly(self: ExperimentSource) -> tuple[str, bytes]:
        time.sleep(1.5)
        return made(self)

    monkeypatch.setattr(ExperimentSource, "current", slowly)
    with serving(tmp_path, "127.0.0.1", 0, Limits(request_seconds=0.5)) as server:
        answer = request(server.url, path="/api/view")
        assert answer.status == 200 and orjson.loads(answer.read())["summary"]["experiment"] == "demo"


def test_limits_refuse_nonsense() -> None:
    for bad in ({"connections": 0}, {"request_seconds": 0}, {"write_seconds": -1}):
        with pytest.raises(ValidationError):
            Limits(**bad)


def test_the_dashboard_never_takes_the_oracles_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may hand out a port it just freed again: the launcher's second pick must not be its first."""
    from fmtune.tuning import roles

    handed = iter([5001, 5001, 5002])
    monkeypatch.setattr(roles.socket.socket, "getsockname", lambda self: ("127.0.0.1", next(handed)))
    assert pinned(environ={}, avoid={5001})["FMTUNE_DASHBOARD_PORT"] == "5002"
    with pytest.raises(PlacementError, match="oracle"):
        pinned(environ={"FMTUNE_DASHBOARD_PORT": "5001"}, avoid={5001})


def test_the_bind_address_is_its_own_setting_and_loopback_by_default() -> None:
    assert resolve(environ={}).host == "127.0.0.1"
    assert resolve(environ={"FMTUNE_DASHBOARD_HOST": "0.0.0.0"}).host == "0.0.0.0"
    assert resolve(environ={"KERASTUNER_ORACLE_IP": "0.0.0.0"}).host == "127.0.0.1"  # not the oracle's
    assert pinned(environ={"FMTUNE_DASHBOARD_HOST": "0.0.0.0"}, host="::1")["FMTUNE_DASHBOARD_HOST"] == "::1"
    for bad in ("127.0.0.1:8080", "http://x", "a b", "-x"):
        with pytest.raises(PlacementError, match="FMTUNE_DASHBOARD_HOST"):
            resolve(environ={"FMTUNE_DASHBOARD_HOST": bad})


# -- what the page shows ---------------------------------------------------------------------------


def trial(status: str = "COMPLETED", epochs: int = 9, **fields: Any) -> TrialRecord:
    history = [Epoch(epoch=e, metrics={"val_accuracy": 0.5 + e / 100}) for e in range(epochs)]
    return TrialRecord(trial_id="7", status=status, history=history, score=0.6, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (trial(epochs=1, stopped_by="budget"), "stopped by the budget after epoch 1 of 9: the search's time was up"),
        (trial("STOPPED", 3, stopped_by="Asha", rung=1), "stopped by ASHA at rung 2, after epoch 3 of 9"),
        (trial("STOPPED", 4, stopped_by="MedianStopping"), "stopped by the median rule, after epoch 4 of 9"),
        (trial("FAILED", 0, message="Traceback:\n  x\nValueError: units must be > 0\n"), "failed: ValueError: units"),
        (trial(epochs=5), "ended by its own early stopping after epoch 5 of 9"),
        (trial(epochs=3, hyperparameters={"tuner/epochs": 3}), ""),  # Hyperband's 3 epochs, all run
        (trial(epochs=9, stopped_by="budget"), ""),  # it ran all its epochs anyway
        (trial(epochs=9), ""),
        (trial("RUNNING", 2), ""),
    ],
)
def test_each_trial_says_why_it_ended_there(record: TrialRecord, reason: str) -> None:
    row = view.trial_row(record, epochs_per_trial=9)
    assert row["stop_reason"].startswith(reason) and bool(row["stop_reason"]) == bool(reason), row["stop_reason"]


@given(
    status=st.sampled_from(["COMPLETED", "STOPPED", "FAILED", "RUNNING", "QUEUED"]),
    stopped_by=st.sampled_from([None, "budget", "Asha", "MedianStopping"]),
    ran=st.integers(0, 12),
    planned=st.one_of(st.none(), st.integers(1, 12)),
)
def test_a_trial_cut_short_always_says_why(status: str, stopped_by: str | None, ran: int, planned: int | None) -> None:
    record = trial(status, ran, stopped_by=stopped_by, rung=0 if stopped_by == "Asha" else None)
    reason = view.stop_reason(record, planned)
    if status == "FAILED" or (stopped_by not in (None, "budget") and status != "QUEUED"):
        assert reason
    if status in ("COMPLETED", "STOPPED") and planned and 0 < ran < planned:
        assert reason, (status, stopped_by, ran, planned)
    if status == "RUNNING" and stopped_by is None:
        assert reason == ""


def test_a_trial_the_budget_stops_says_so_from_the_oracle_to_the_page(tmp_path: Path) -> None:
    """The oracle records what stopped a trial when the search's time runs out, and the view says it."""
    from tests.unit.test_state_writer import setup

    oracle, writer = setup(tmp_path, "search.max_trials=4", "search.epochs=9")
    created = oracle.create_trial("tuner0")
    oracle.update_trial_from("tuner0", created.trial_id, {"val_accuracy": 0.7}, step=0)
    oracle.control.search_open = lambda: False  # the budget closes the search
    oracle.update_trial_from("tuner0", created.trial_id, {"val_accuracy": 0.8}, step=1)
    created.status = "COMPLETED"
    oracle.end_trial_from("tuner0", created)
    writer.update(force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None
    (row,) = view.build(state, {})["trials"]
    assert row["status"] == "COMPLETED" and row["epochs"] == 2 and row["planned_epochs"] == 9
    assert row["stop_reason"].startswith("stopped by the budget after epoch 2 of 9")


def test_the_retraining_curve_grows_epoch_by_epoch_in_the_run_state(tmp_path: Path) -> None:
    from tests.unit.test_state_writer import setup

    _, writer = setup(tmp_path)
    writer.update(Phase.RETRAIN, force=True)
    shown = []
    for e in range(3):
        writer.retrain_epoch(Epoch(epoch=e, metrics={"accuracy": 0.8 + e / 100, "loss": 0.5, "learning_rate": 0.01}))
        state = run_state.load(writer.experiment_dir)
        assert state is not None and state.phase == Phase.RETRAIN
        built = view.build(state, {})
        (curve,) = built["figures"]["retrain"]["data"]
        shown.append(curve["x"])
        assert built["summary"]["retrain_epochs_so_far"] == e + 1
        assert f"epoch {e + 1} so far" in built["figures"]["retrain"]["layout"]["title"]["text"]
    assert shown == [[1], [1, 2], [1, 2, 3]]


def test_the_epoch_log_hands_each_retraining_epoch_on_as_it_ends() -> None:
    """Keras calls the callback after each epoch of a real fit (what retraining passes to the state)."""
    import keras
    import numpy as np

    from fmtune.pacing import EpochLog

    heard: list[Epoch] = []
    log = EpochLog("retrain", 3, heard.append)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(np.zeros((8, 4)), np.zeros(8), epochs=3, verbose=0, callbacks=[log])
    assert [e.epoch for e in heard] == [0, 1, 2] and heard == log.history
    assert "accuracy" in heard[0].metrics


def phase_state(phase: Phase, deploys: bool = False, **fields: Any) -> RunState:
    return RunState(experiment="e", config_digest="d", max_trials=2, objective="val_accuracy", phase=phase,
                    deploys=deploys, **fields)  # fmt: skip


@pytest.mark.parametrize(
    ("state", "steps"),
    [
        (phase_state(Phase.SEARCH), "current next next skipped next"),
        (phase_state(Phase.RETRAIN, True), "done current next next next"),
        (phase_state(Phase.EXPORT, True), "done done current next next"),
        (phase_state(Phase.DEPLOY, True), "done done done current next"),
        (phase_state(Phase.DONE, True), "done done done done done"),
        (phase_state(Phase.DONE), "done done done skipped done"),
        (
            phase_state(Phase.FAILED, True, test_accuracy=0.9, deployment=Deployment(outcome="refused")),
            "done done done failed next",
        ),
        (phase_state(Phase.FAILED, retrain_epochs=[Epoch(epoch=0, metrics={})]), "done failed next skipped next"),
        (phase_state(Phase.FAILED), "failed next next skipped next"),
        (phase_state(Phase.FAILED, True, failed_in=Phase.DEPLOY), "done done done failed next"),
    ],
)
def test_deploy_is_a_phase_of_its_own(state: RunState, steps: str) -> None:
    shown = view.summary(state)["phases"]
    assert [p["phase"] for p in shown] == ["search", "retrain", "export", "deploy", "done"]
    assert " ".join(p["status"] for p in shown) == steps


def test_the_state_writer_records_the_deploy_phase(tmp_path: Path) -> None:
    from tests.unit.test_state_writer import setup

    oracle, _ = setup(tmp_path)
    from fmtune import config
    from fmtune.run.state_writer import StateWriter

    cfg = config.load("quick", None, [f"workdir={tmp_path}", "budget_minutes=null"], environ={})
    writer = StateWriter(cfg, oracle, None, deploys=True)
    writer.update(Phase.DEPLOY, force=True)
    state = run_state.load(writer.experiment_dir)
    assert state is not None and state.phase == Phase.DEPLOY and state.deploys
    assert [p["status"] for p in view.summary(state)["phases"]][3] == "current"
    writer.failed(RuntimeError("the cluster is gone"))
    state = run_state.load(writer.experiment_dir)
    assert state is not None and state.phase == Phase.FAILED and state.failed_in == Phase.DEPLOY
    assert [p["status"] for p in view.summary(state)["phases"]] == ["done", "done", "done", "failed", "next"]


def test_a_run_that_fails_in_retraining_shows_it_there(tmp_path: Path) -> None:
    from tests.unit.test_state_writer import setup

    _, writer = setup(tmp_path)
    writer.update(Phase.RETRAIN, force=True)
    writer.failed(MemoryError())
    state = run_state.load(writer.experiment_dir)
    assert state is not None and state.message == "MemoryError"
    assert [p["status"] for p in view.summary(state)["phases"]] == ["done", "failed", "next", "skipped", "next"]


# -- parallel coordinates: titles that never overlap --------------------------------------------

TWELVE = [
    "units_1",
    "units_2",
    "units_3",
    "dropout_1",
    "dropout_2",
    "learning_rate",
    "l2",
    "batch_size",
    "activation",
    "optimizer",
    "conv_filters_1",
    "kernel_size",
]


def many_hyperparameters_state(names: list[str] = TWELVE, trials: int = 24) -> RunState:
    """A finished search over ``names`` (every one varies), 9 epochs a trial: most completed, some
    stopped by ASHA at the first rung, one by the budget, the last one failed."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    records = []
    for i in range(trials):
        values: dict[str, Any] = {}
        for j, name in enumerate(names):
            if name == "activation":
                values[name] = ["relu", "tanh", "gelu"][(i + j) % 3]
            elif name == "optimizer":
                values[name] = ["adam", "sgd"][i % 2]
            elif name in ("learning_rate", "l2"):
                values[name] = 10 ** -(1 + (i * (j + 1)) % 4)
            elif name.startswith("dropout"):
                values[name] = round(((i + j) % 5) / 10, 1)
            else:
                values[name] = 16 * (1 + (i * (j + 3)) % 8)
        fields: dict[str, Any] = {"status": "COMPLETED", "score": 0.8 + ((i * 7) % 13) / 100}
        epochs = 9
        if i == trials - 1:
            fields = {"status": "FAILED", "score": None, "message": "Traceback ...\nResourceExhaustedError: OOM"}
            epochs = 0
        elif i == trials - 2:
            fields["stopped_by"], epochs = "budget", 2
        elif i % 6 == 1:
            fields.update(status="STOPPED", stopped_by="Asha", rung=0, score=fields["score"] - 0.1)
            epochs = 1
        score = fields["score"] or 0.8
        history = [Epoch(epoch=e, metrics={"val_accuracy": score - 0.1 * (epochs - 1 - e) / 9}) for e in range(epochs)]
        records.append(
            TrialRecord(
                trial_id=f"{i:02d}",
                worker=f"tuner{i % 2}",
                hyperparameters=values,
                history=history,
                best_epoch=epochs - 1 if epochs else None,
                started_at=start + timedelta(seconds=20 * i),
                ended_at=start + timedelta(seconds=20 * i + 15),
                seconds=15.0,
                **fields,
            )
        )
    best, points = None, []
    for r in records:
        if r.status == "COMPLETED" and r.score is not None and (best is None or r.score > best):
            best = r.score
            points.append(run_state.BestPoint(at=r.ended_at, trial_id=r.trial_id, score=r.score))  # type: ignore[arg-type]
    return RunState(
        experiment="twelve",
        config_digest="x",
        phase=Phase.DONE,
        max_trials=trials,
        trials_finished=trials,
        objective="val_accuracy",
        epochs_per_trial=9,
        best_score=best,
        trials=records,
        best_history=points,
        started_at=start,
        updated_at=start + timedelta(seconds=20 * trials + 30),
    )


def corners(x: float, y: float, width: float, angle: int) -> list[tuple[float, float]]:
    """A title's box as plotly draws it: from its anchor, ``width`` along the angle, one line high
    on the side away from the axes."""
    a = math.radians(angle)
    along, across = (math.cos(a), math.sin(a)), (math.sin(a), -math.cos(a))
    if angle == 0:
        x -= width / 2
    h = charts.TITLE_PX
    return [
        (x, y),
        (x + width * along[0], y + width * along[1]),
        (x + width * along[0] + h * across[0], y + width * along[1] + h * across[1]),
        (x + h * across[0], y + h * across[1]),
    ]


def overlap(p: list[tuple[float, float]], q: list[tuple[float, float]]) -> bool:
    """Whether two convex polygons overlap (separating axis theorem); touching is not overlapping."""
    for poly in (p, q):
        for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
            nx, ny = y2 - y1, x1 - x2
            a = [nx * x + ny * y for x, y in p]
            b = [nx * x + ny * y for x, y in q]
            if max(a) <= min(b) + 1e-6 or max(b) <= min(a) + 1e-6:
                return False
    return True


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(
        st.text("abcdefghijklmnopqrstuvwxyz_() 0123456789", min_size=1, max_size=40), min_size=2, max_size=30
    )
)
def test_the_chosen_title_angle_keeps_titles_apart(labels: list[str]) -> None:
    """At the narrowest the page lets the chart be, no two titles at the chosen angle overlap, and
    the margins hold them all."""
    cut = [charts.cut(label) for label in labels]
    angle, margin = charts.titled(cut)
    spacing = charts.PARALLEL_MIN_PX / (len(cut) - 1)
    boxes = [corners(i * spacing, 0.0, charts.title_width(label), angle) for i, label in enumerate(cut)]
    for left, right in itertools.pairwise(boxes):
        assert not overlap(left, right), (angle, left, right)
    top = min(y for box in boxes for _, y in box)
    assert -top + charts.TITLE_GAP_PX + 40 <= margin["t"]
    assert max(x for box in boxes for x, _ in box) - (len(cut) - 1) * spacing <= margin["r"]
    assert -min(x for box in boxes for x, _ in box) <= margin["l"]


def test_twelve_hyperparameters_get_titles_at_an_angle_and_room_above() -> None:
    state = many_hyperparameters_state()
    reasons = [row["stop_reason"] for row in view.build(state, {})["trials"]]
    assert sum(r.startswith("stopped by ASHA at rung 1") for r in reasons) == 4
    assert reasons[-2].startswith("stopped by the budget") and reasons[-1] == "failed: ResourceExhaustedError: OOM"
    figure = charts.parallel_coordinates(state)
    (trace,) = figure["data"]
    assert len(trace["dimensions"]) == 13 and trace["labelangle"] in (-45, -90)
    assert figure["layout"]["margin"]["t"] > 100 and figure["layout"]["height"] > charts.BASE_LAYOUT["height"]
    few = charts.parallel_coordinates(sample_state())["data"][0]
    assert few["labelangle"] == 0  # four short titles sit level


def test_the_summary_says_when_the_coordinator_cannot_write_its_state() -> None:
    """The page's message then names the failure (dashboard.js), beside the metric and the log."""
    state = sample_state().model_copy(update={"state_write_failures": 3, "state_write_error": "No space left"})
    shown = view.summary(state)
    assert (shown["state_write_failures"], shown["state_write_error"]) == (3, "No space left")
    assert view.summary(sample_state())["state_write_error"] is None
