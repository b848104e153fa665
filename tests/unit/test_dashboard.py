"""The dashboard's view, charts and server, without training or a browser."""

from __future__ import annotations

import doctest
import http.client
import importlib
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from fmtune import run_state
from fmtune.dashboard import charts, view
from fmtune.dashboard.server import serving
from fmtune.run_state import RunState
from fmtune.trials import Epoch, TrialRecord


@pytest.mark.parametrize(
    "name", ["fmtune.dashboard.importance", "fmtune.dashboard.placement", "fmtune.dashboard.charts"]
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


def test_charts_skip_values_every_trial_shares() -> None:
    dims = charts.parallel_coordinates(sample_state())["data"][0]["dimensions"]
    assert [d["label"] for d in dims] == ["activation", "learning_rate (log10)", "units", "val_accuracy"]
