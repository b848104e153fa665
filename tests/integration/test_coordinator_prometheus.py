"""A real Prometheus scrapes a live local run's coordinator at /metrics, then `fmtune dashboard` on
the finished run: the series it finds agree with the run's own record (results.json)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fmtune import layout, results
from fmtune.layout import ExperimentDir

from .helpers import tune_argv, wait_until
from .prometheus import prometheus
from .test_dashboard import start, stop

pytestmark = pytest.mark.timeout(600)
SETTINGS = ["search.algorithm=random", "search.epochs=8", "search.asha.enabled=false", "budget_minutes=null"]


def address(url: str) -> str:
    return url.removeprefix("http://").rstrip("/")


def test_prometheus_follows_a_live_run_and_agrees_with_its_record(synthetic_dir: Path, tmp_path: Path) -> None:
    sets = [arg for s in SETTINGS for arg in ("--set", s)]
    proc, out = start(tune_argv(synthetic_dir, tmp_path, *sets, trials=3), tmp_path)
    try:
        url = out.wait_for(r"^dashboard: (http://127\.0\.0\.1:\d+/)").group(1)
        with prometheus(tmp_path / "live", {"coordinator": (address(url), "/metrics")}) as live:
            live.wait_for('fmtune_phase{phase="search"}', 1, timeout=120)
            wait_until(
                lambda: (live.value("sum(fmtune_oracle_rpc_seconds_count)") or 0) > 0,
                120,
                lambda: "no oracle call timed",
            )
            wait_until(lambda: (live.value("fmtune_trials_started_total") or 0) >= 1, 60, lambda: "no trial started")
            assert proc.wait(timeout=300) == 0, "".join(out.lines)[-3000:]
            seen_started = live.value("max_over_time(fmtune_trials_started_total[10m])")
    finally:
        stop(proc)

    (experiment,) = layout.experiments(tmp_path / "runs", layout.RESULTS)
    record = results.load(ExperimentDir(experiment).results)
    finished = [t for t in record.trials if t.finished]
    assert seen_started is not None and 1 <= seen_started <= sum(t.started_at is not None for t in record.trials)

    # The finished run, served by `fmtune dashboard`, says exactly what results.json says.
    board, board_out = start([sys.executable, "-m", "fmtune", "dashboard", str(experiment), "--port", "0"], tmp_path)
    try:
        url = board_out.wait_for(r"dashboard of \S+: (http://\S+)").group(1)
        with prometheus(tmp_path / "after", {"coordinator": (address(url), "/metrics")}) as after:
            after.wait_for('fmtune_phase{phase="done"}', 1)
            assert after.value("sum(fmtune_trials_ended_total)") == len(finished)
            completed = sum(t.status == "COMPLETED" for t in record.trials)
            assert after.value('sum(fmtune_trials_ended_total{status="COMPLETED"})') == completed
            best = next(t for t in record.trials if t.trial_id == record.best_trial_id)
            assert after.value("fmtune_best_objective") == pytest.approx(best.score)
            assert after.value("fmtune_trial_epoch_seconds_count") == sum(len(t.epoch_seconds) for t in record.trials)
    finally:
        stop(board)
