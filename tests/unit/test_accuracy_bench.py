"""The accuracy benchmark's pure parts on fabricated results, runs made by hand joining its report, and
(slow) the whole bench on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fmtune.config import Objective
from fmtune.results import Results, RetrainRecord
from fmtune.trials import Epoch, TrialRecord
from tests.bench import accuracy_report
from tests.bench.host import cpu_model

from ..conftest import REPO_ROOT, SYNTHETIC, write_dataset

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
QUICK = accuracy_report.PRESETS["quick"]


def fabricated(test_accuracy: float = 0.91, total: float = 230.0) -> Results:
    """Four trials: stopped by ASHA at epochs 1 and 3, one full 9 epochs, one stopped by the budget at 2."""
    shapes = [(1, "Asha", 0.80, 30), (9, None, 0.88, 150), (3, "Asha", 0.84, 80), (2, "budget", 0.90, 160)]
    trials = [
        TrialRecord(
            trial_id=str(i),
            status="COMPLETED",
            hyperparameters={"units": 64},
            score=score,
            history=[Epoch(epoch=e, metrics={"val_accuracy": score}) for e in range(epochs)],
            stopped_by=stopped,
            started_at=START,
            ended_at=START + timedelta(seconds=ended),
        )
        for i, (epochs, stopped, score, ended) in enumerate(shapes)
    ]
    retrain = RetrainRecord(
        hyperparameters={"units": 64},
        train_samples=60000,
        holdout_samples=0,
        epochs_run=12,
        best_epoch=11,
        history=[],
        epoch_seconds=[5.0, 6.0, 7.0],
        holdout_metrics={},
        test_loss=0.3,
        test_accuracy=test_accuracy,
        seconds=60.0,
    )
    return Results(
        experiment="quick",
        dataset="fashion_mnist",
        family="mlp",
        algorithm="bayesian",
        objective=Objective(),
        max_trials=100,
        config_digest="x",
        seed=7,
        trials=trials,
        best_trial_id="3",
        best_hyperparameters={"units": 64},
        tuning_seconds=170.0,
        budget_minutes=4,
        retrain_epoch_estimate=8.0,
        timing={"startup": 5.0, "search": 165.0, "retrain": 60.0, "export": 3.0, "total": total},
        retrain=retrain,
        test_accuracy=test_accuracy,
    )


def test_levels_are_the_rungs_and_the_full_length() -> None:
    assert accuracy_report.levels(1, 3, 9) == [1, 3, 9]


def test_best_so_far_keeps_the_best_in_time_order() -> None:
    points = [(3.0, 0.7), (1.0, 0.8), (2.0, None), (4.0, 0.9)]
    assert accuracy_report.best_so_far(points) == [[1.0, 0.8], [3.0, 0.8], [4.0, 0.9]]
    assert accuracy_report.best_so_far([(1.0, 0.5), (2.0, 0.4)], maximise=False) == [[1.0, 0.5], [2.0, 0.4]]


def test_a_run_row_counts_rungs_stops_and_time() -> None:
    row = accuracy_report.run_row(fabricated(), 235.0, START.timestamp(), [1, 3, 9], QUICK)
    assert row["reached"] == {"1": 4, "3": 2, "9": 1}
    assert (row["trials"], row["stopped_asha"], row["stopped_budget"]) == (4, 2, 1)
    assert (row["search_s"], row["retrain_s"], row["export_s"], row["total_s"]) == (165.0, 60.0, 3.0, 230.0)
    assert row["retrain_epochs"] == 12 and row["retrain_epoch_s"] == 6.0
    assert row["curve"] == [[0.5, 0.8], [80 / 60, 0.84], [2.5, 0.88], [160 / 60, 0.9]]
    assert row["within_budget"] and row["met"]


@pytest.mark.parametrize(
    ("test_accuracy", "wall", "met"), [(0.905, 240.0, True), (0.9049, 200.0, False), (0.93, 241.0, False)]
)
def test_a_run_meets_the_target_only_with_both_accuracy_and_time(test_accuracy: float, wall: float, met: bool) -> None:
    assert accuracy_report.run_row(fabricated(test_accuracy), wall, START.timestamp(), [1, 3, 9], QUICK)["met"] is met


def test_summary_gives_medians_spreads_and_needs_every_run_to_meet_the_target() -> None:
    rows = [accuracy_report.run_row(fabricated(acc), wall, START.timestamp(), [1, 3, 9], QUICK) for acc, wall in
            [(0.91, 200.0), (0.92, 220.0), (0.93, 230.0)]]  # fmt: skip
    s = accuracy_report.summary(rows, QUICK)
    assert s["test_accuracy"] == {"median": 0.92, "min": 0.91, "max": 0.93}
    assert s["wall_s"] == {"median": 220.0, "min": 200.0, "max": 230.0}
    assert s["reached"]["3"] == {"median": 2, "min": 2, "max": 2}
    assert s["runs_met"] == 3 and s["targets_met"]
    assert not accuracy_report.summary(rows[:2], QUICK)["targets_met"]  # quick needs 3 runs
    rows[1]["met"] = False
    again = accuracy_report.summary(rows, QUICK)
    assert again["runs_met"] == 2 and not again["targets_met"]
    assert accuracy_report.fmt_spread(s["test_accuracy"], 4) == "0.9200 (0.9100-0.9300)"
    assert accuracy_report.fmt_spread({"median": 2, "min": 2, "max": 2}, 0) == "2"


def sample_report() -> dict:
    start = START.timestamp()
    rows = [accuracy_report.run_row(fabricated(acc), 220.0, start, [1, 3, 9], QUICK) for acc in (0.91, 0.92)]
    vanilla = accuracy_report.vanilla_row(
        {
            "tuner": "RandomSearch",
            "space": "seed 002's",
            "epochs_per_trial": 5,
            "batch_size": 128,
            "early_stopping": "val_loss, patience 2",
            "split": "90/10",
            "threads": 2,
            "budget_minutes": 4,
            "trials": [
                {"ended_s": 100.0, "val_accuracy": 0.86, "epochs": 5},
                {"ended_s": 200.0, "val_accuracy": 0.85, "epochs": 4},
            ],
            "best_val_accuracy": 0.86,
            "best_hyperparameters": {"units": 96},
            "test_accuracy": 0.855,
            "wall_seconds": 230.0,
        }
    )
    entry = {
        **QUICK.model_dump(exclude={"runs", "baseline_runs", "shorter_budgets"}),
        "required_runs": 3,
        "measured_at": "now",
        "runs": rows,
        "summary": accuracy_report.summary(rows, QUICK),
        "reproduced": {"epochs": 12, "test_accuracy": [0.9012, 0.8991], "difference_points": 0.21, "met": True},
        "vanilla": vanilla,
        "baselines": {
            "centre": [{"test_accuracy": 0.89, "retrain_s": 230.0, "retrain_epochs": 70, "seed": 5, "wall_s": 238.0}],
            "optuna": [
                {
                    "test_accuracy": 0.895,
                    "trials": 20,
                    "pruned": 14,
                    "search_s": 120.0,
                    "retrain_s": 100.0,
                    "retrain_epochs": 30,
                    "seed": 5,
                    "wall_s": 236.0,
                    "trials_ended": [[1.0, 0.85], [1.5, 0.87]],
                }
            ],
        },
    }
    return {"command": accuracy_report.COMMAND, "machine": "test", "presets": {"quick": entry}}


def test_the_report_is_written_with_runs_medians_and_the_side_by_side(tmp_path: Path) -> None:
    report = sample_report()
    assert report["presets"]["quick"]["vanilla"]["curve"] == [[100 / 60, 0.86], [200 / 60, 0.86]]
    accuracy_report.write(report, tmp_path)
    text = (tmp_path / "accuracy.md").read_text()
    assert "| quick | 1 | 3.7 | 0.1 | 2.8 | 1.0 | 0.1 | 0.9100 | 4 | 1: 4, 3: 2, 9: 1 | 2 / 1 | 12 | yes |" in text
    assert "0 of 2" not in text and "2 of 2" in text  # both runs met it, but quick needs 3: not met
    assert "| **0.9150 (0.9100-0.9200)** | 3.7 | no |" in text
    assert "| 2 (9) | 0.8600 | **0.8550** | 3.8 |" in text
    assert "| quick | 12 | 0.9012 | 0.8991 | 0.21 | yes |" in text
    assert "| quick | centre | 1 | **0.8900** | - | - | 3.8 | 70 | 5 |" in text
    assert "| quick | optuna | 1 | **0.8950** | 20 (14) | 2.0 | 1.7 | 30 | 5 |" in text
    # 220 s of 240 used; retraining epochs of 6 and 7 s after the first, against an estimate of 8 s
    assert f"| quick | 1 | 7 | {cpu_model()} | 8.3% | 8.0 | 6.5 | +23% |" in text  # each run names its CPU
    assert json.loads((tmp_path / "accuracy.json").read_text()) == report
    png = (tmp_path / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def run_by_hand(directory: Path) -> Path:
    """A finished quick run's directory as tests.bench.adopt takes it: its results, resolved config
    and GNU time's report at the end of its log."""
    from fmtune import config, results

    experiment = directory / "runs" / "quick"
    experiment.mkdir(parents=True)
    results.save(fabricated(), experiment)
    (experiment / "config.yaml").write_text(config.load("quick", None, [], flags={"seed": 7}).to_yaml())
    (directory / "log").write_text("...\n\tElapsed (wall clock) time (h:mm:ss or m:ss): 3:50.25\n\tExit status: 0\n")
    return directory


def adopt(monkeypatch: pytest.MonkeyPatch, *args: str | Path) -> None:
    from tests.bench import adopt as adopting

    monkeypatch.setattr(sys, "argv", ["adopt", *map(str, args)])
    adopting.main()


def test_runs_made_by_hand_join_the_report_as_the_bench_s_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    accuracy_report.write(sample_report(), tmp_path / "reports")
    baseline = tmp_path / "centre.json"
    record = {"baseline": "centre", "preset": "quick", "test_accuracy": 0.9, "retrain_s": 230.0, "seed": 7}
    baseline.write_text(json.dumps({**record, "retrain_epochs": 71, "wall_s": 239.0}))
    run = run_by_hand(tmp_path / "a")
    adopt(monkeypatch, "quick", "--run", run, "--baseline", baseline, "--out", tmp_path / "reports")
    quick = json.loads((tmp_path / "reports" / "accuracy.json").read_text())["presets"]["quick"]
    assert len(quick["runs"]) == 3 and quick["runs"][2]["by_hand"] and quick["runs"][2]["wall_s"] == 230.25
    assert [b["seed"] for b in quick["baselines"]["centre"]] == [5, 7]
    assert quick["summary"]["test_accuracy"]["median"] == 0.91 and quick["vanilla"]
    text = (tmp_path / "reports" / "accuracy.md").read_text()
    assert "| quick | 3 (by hand) | 3.8 |" in text

    adopt(monkeypatch, "quick", "--run", run_by_hand(tmp_path / "b"), "--replace", "--out", tmp_path / "reports")
    quick = json.loads((tmp_path / "reports" / "accuracy.json").read_text())["presets"]["quick"]
    assert len(quick["runs"]) == 1 and not quick["baselines"] and quick["vanilla"]


@pytest.mark.parametrize(
    ("log", "problem"),
    [
        ("no time here\n", "no report from GNU time"),
        ("\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:00.00\n\tExit status: 1\n", "fmtune tune exited 1"),
    ],
)
def test_a_run_by_hand_without_a_clean_gnu_time_report_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: str, problem: str
) -> None:
    accuracy_report.write(sample_report(), tmp_path / "reports")
    before = (tmp_path / "reports" / "accuracy.json").read_text()
    run = run_by_hand(tmp_path / "a")
    (run / "log").write_text(log)
    with pytest.raises(SystemExit, match=problem):
        adopt(monkeypatch, "quick", "--run", run, "--out", tmp_path / "reports")
    assert (tmp_path / "reports" / "accuracy.json").read_text() == before  # nothing half-written


def test_a_run_of_another_preset_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    accuracy_report.write(sample_report(), tmp_path / "reports")
    with pytest.raises(SystemExit, match="a run of preset 'quick', not 'mnist'"):
        adopt(monkeypatch, "mnist", "--run", run_by_hand(tmp_path / "a"), "--out", tmp_path / "reports")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_whole_bench_runs_on_tiny_data_within_a_tiny_budget(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data" / SYNTHETIC, train=3000, test=300)
    # The budget counts from the command's start, whose imports take up to ~25 s on a slow host.
    sets = [f"dataset={SYNTHETIC}", "retrain.min_epochs=2", "retrain.max_epochs=3", "retrain.budget_share=0.4"]
    argv = [sys.executable, "-m", "tests.bench.accuracy", "--only", "quick", "--runs", "2", "--budget", "90s"]
    argv += ["--data-dir", str(data.parent), "--out", str(tmp_path / "reports"), "--workdir", str(tmp_path / "work")]
    argv += [arg for s in sets for arg in ("--set", s)]
    subprocess.run(argv, cwd=REPO_ROOT, check=True, timeout=800)
    report = json.loads((tmp_path / "reports" / "accuracy.json").read_text())
    quick = report["presets"]["quick"]
    assert len(quick["runs"]) == 2 and quick["budget_minutes"] == 1.5
    for run in quick["runs"]:
        assert run["trials"] >= 1 and run["reached"]["1"] == run["trials"] and run["curve"]
        assert run["wall_s"] <= 90 * 1.1, run
    vanilla = quick["vanilla"]
    assert vanilla["trials"] and vanilla["wall_seconds"] <= 90 * 1.1, vanilla
    assert 0 <= vanilla["test_accuracy"] <= 1
    again = quick["reproduced"]
    assert again["epochs"] >= 1 and len(again["test_accuracy"]) == 2 and again["met"], again
    assert (tmp_path / "reports" / "accuracy.png").stat().st_size > 20_000
    assert "Side by side" in (tmp_path / "reports" / "accuracy.md").read_text()
