"""The dashboard in a real browser (Debian's chromium through Playwright), against a live `fmtune
tune` on tiny synthetic data, then `fmtune dashboard` on the finished run; and its safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fmtune import results, run_state

from .browser import TITLE_BOXES, Output, Watched, chromium, overlapping
from .helpers import env, tune_argv
from .test_local import descendants

pytestmark = pytest.mark.timeout(600)
SETTINGS = [
    "search.algorithm=random",
    "search.epochs=30",
    "search.asha.enabled=false",
    "budget_minutes=null",
    "fault_tolerance.heartbeat_seconds=0.5",
    "fault_tolerance.lease_seconds=3",
]
COMPLETED_ROWS = "() => document.querySelectorAll('#trials tbody tr span.status.COMPLETED').length"
BEST_POINTS = (
    "() => { const c = document.getElementById('best-chart'); return c.data && c.data[1] ? c.data[1].x.length : 0; }"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def start(argv: list[str], cwd: Path) -> tuple[subprocess.Popen[str], Output]:
    proc = subprocess.Popen(argv, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, Output(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dashboard_argv(path: Path) -> list[str]:
    return [sys.executable, "-m", "fmtune", "dashboard", str(path), "--port", "0"]


def test_the_dashboard_follows_a_live_search(browser: Any, synthetic_dir: Path, tmp_path: Path) -> None:
    sets = [arg for s in SETTINGS for arg in ("--set", s)]
    proc, out = start(tune_argv(synthetic_dir, tmp_path, *sets, "--max-restarts", "0", trials=5), tmp_path)
    try:
        url = out.wait_for(r"^dashboard: (http://127\.0\.0\.1:\d+/)").group(1)
        out.wait_for(r"\[coordinator\] .*dashboard: http")  # the coordinator is listening
        live = Watched(browser)
        live.page.goto(url)
        live.until("() => document.querySelectorAll('#workers tbody tr').length >= 2")
        assert live.page.evaluate(COMPLETED_ROWS) == 0  # the workers are still starting
        first_points = live.page.evaluate(BEST_POINTS)
        # A worker killed mid-trial: silent on the page, then its trial back in the queue.
        trial_id = out.wait_for(r"\[tuner1\] \S+ trial (\d+) epoch 3/30").group(1)
        live.until(
            "(t) => { const r = document.querySelector(`#workers tr[data-worker=tuner1]`);"
            " return r && r.children[2].textContent === t; }",
            trial_id,
        )
        live.shot("dashboard-running")
        for pid, tid in descendants(proc.pid).items():
            if tid == "tuner1":
                os.kill(pid, signal.SIGKILL)
        live.until("() => document.querySelector('#workers tr[data-worker=tuner1] .status').textContent === 'silent'")
        live.shot("dashboard-worker-silent")
        live.until(
            "(t) => { const r = document.querySelector(`#trials tr[data-trial='${t}']`);"
            " return r && r.textContent.includes('re-queued from tuner1'); }",
            trial_id,
            timeout=30,
        )
        # Trial rows appear as trials end, and the best-so-far chart gains their points.
        live.until(f"() => ({COMPLETED_ROWS})() >= 3", timeout=240)
        assert live.until(f"(n) => ({BEST_POINTS})() > n && ({BEST_POINTS})()", first_points) > first_points
        live.until("() => document.getElementById('phase').textContent === 'done'", timeout=240)
        live.until("() => document.getElementById('test-accuracy').textContent !== 'n/a'")
        while_running = list(live.errors)
        live.shot("dashboard-finished-live")
        assert proc.wait(timeout=120) == 0, out.text()[-4000:]
        assert not while_running, while_running
        # Once the run is over its coordinator, and so the dashboard's server, is gone: the page's
        # next polls are refused, and nothing else goes wrong.
        assert all("ERR_CONNECTION_REFUSED" in e for e in live.errors), live.errors
    finally:
        stop(proc)
    experiment = tmp_path / "runs" / "itest"
    res = results.load(experiment / "results.json")
    requeued = next(t for t in res.trials if t.trial_id == trial_id)
    assert requeued.status == "COMPLETED" and requeued.worker == "tuner0"
    # Retraining's epochs reached state.json one by one, as they ended; the run went through its phases.
    state = run_state.load(experiment)
    assert state is not None and res.retrain is not None
    assert [e.epoch for e in state.retrain_epochs] == list(range(res.retrain.epochs_run))
    assert not state.deploys and state.phase == run_state.Phase.DONE
    # After the run, `fmtune dashboard` shows the same trials and the test accuracy.
    board, board_out = start(dashboard_argv(tmp_path / "runs"), tmp_path)
    try:
        url = board_out.wait_for(r"dashboard of \S+: (http://\S+)").group(1)
        after = Watched(browser)
        after.page.goto(url)
        after.until("(n) => document.querySelectorAll('#trials tbody tr').length === n", len(res.trials))
        shown = after.page.eval_on_selector_all("#trials tbody tr", "rows => rows.map(r => r.dataset.trial)")
        assert sorted(shown) == sorted(t.trial_id for t in res.trials)
        assert res.test_accuracy is not None
        after.until("(a) => document.getElementById('test-accuracy').textContent === a", f"{res.test_accuracy:.4f}")
        assert after.page.text_content(f"#trials tr[data-trial='{trial_id}']").count("re-queued from tuner1") == 1
        after.page.select_option("#status-filter", "COMPLETED")
        after.until(
            "() => [...document.querySelectorAll('#trials tbody tr')].every(r => r.textContent.includes('COMPLETED'))"
        )
        after.shot("dashboard-finished")
        assert not after.errors, after.errors
    finally:
        stop(board)


def test_what_comes_from_trials_is_shown_as_text(browser: Any, tmp_path: Path) -> None:
    from tests.unit.test_dashboard import sample_state

    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    run_state.save(sample_state(evil, evil), tmp_path)
    board, out = start(dashboard_argv(tmp_path), tmp_path)
    try:
        url = out.wait_for(r"dashboard of \S+: (http://\S+)").group(1)
        page = Watched(browser)
        page.page.goto(url)
        page.until("(e) => document.getElementById('experiment').textContent === e", evil)
        page.until("() => document.querySelectorAll('#trials tbody tr').length === 6")
        assert evil in page.page.text_content("#trials tbody")
        assert page.page.locator("#trials img, header img, #trials script").count() == 0
        # plotly draws the value as an axis tick, as text
        page.until("(e) => [...document.querySelectorAll('#parallel-chart text')].some(t => t.textContent === e)", evil)
        assert page.page.locator("#parallel-chart img").count() == 0
        page.shot("dashboard-escaped")
        assert not page.dialogs and not page.errors, (page.dialogs, page.errors)
    finally:
        stop(board)


@pytest.mark.parametrize("width", [1400, 900])
def test_twelve_hyperparameters_titles_never_overlap(browser: Any, tmp_path: Path, width: int) -> None:
    """The parallel coordinates of a search over 12 hyperparameters in chromium: every title drawn,
    inside the chart, and no two overlapping (their boxes as drawn, rotation included)."""
    from tests.unit.test_dashboard import TWELVE, many_hyperparameters_state

    run_state.save(many_hyperparameters_state(), tmp_path)
    board, out = start(dashboard_argv(tmp_path), tmp_path)
    try:
        url = out.wait_for(r"dashboard of \S+: (http://\S+)").group(1)
        page = Watched(browser, width=width)
        page.page.goto(url)
        page.until("() => document.querySelectorAll('#parallel-chart .axis-title').length === 13")
        page.until("() => document.querySelectorAll('#trials tbody tr').length === 24")
        assert "stopped by the budget after epoch 2 of 9" in page.page.text_content("#trials tr[data-trial='22']")
        assert "stopped by ASHA at rung 1" in page.page.text_content("#trials tr[data-trial='01']")
        drawn = page.page.evaluate(TITLE_BOXES)
        titles = drawn["titles"]
        names = {t["text"].removesuffix(" (log10)") for t in titles}
        assert names == {*TWELVE, "val_accuracy"}
        left, top, right, bottom = drawn["chart"]
        for t in titles:  # nothing cut off by the chart's edges
            for x, y in t["corners"]:
                assert left - 1 <= x <= right + 1 and top - 1 <= y <= bottom + 1, (t, drawn["chart"])
        clashes = [
            (a["text"], b["text"])
            for i, a in enumerate(titles)
            for b in titles[i + 1 :]
            if overlapping(a["corners"], b["corners"])
        ]
        clashes += [(t["text"], "the chart's heading") for t in titles if overlapping(t["corners"], drawn["title"])]
        page.page.locator("#parallel-chart").scroll_into_view_if_needed()
        shot = page.shot(f"dashboard-12hp-{width}")
        assert not clashes, f"overlapping titles {clashes}; see {shot}"
        assert not page.errors, page.errors
    finally:
        stop(board)
