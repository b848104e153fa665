"""A finished experiment is not retrained by a start under the same config, nor under one that
changes only how faults are handled (an upgrade that raises the worker wait, say)."""

from __future__ import annotations

from pathlib import Path

from fmtune import config, results
from fmtune.config import ExperimentConfig, Objective
from fmtune.results import Results
from fmtune.run.coordinator import finished_before


def make(tmp_path: Path, *assignments: str) -> ExperimentConfig:
    return config.load("quick", None, [f"workdir={tmp_path}", "name=exp", "seed=3", *assignments], environ={})


def finish(cfg: ExperimentConfig) -> None:
    record = Results(
        experiment=cfg.name,
        dataset=cfg.dataset_name,
        family=cfg.search.model,
        algorithm=cfg.search.algorithm,
        objective=Objective(),
        max_trials=cfg.search.max_trials,
        config_digest=cfg.digest(),
        outcome_digest=cfg.outcome_digest(),
        trials=[],
        best_trial_id=None,
        best_hyperparameters=None,
        tuning_seconds=1.0,
        test_accuracy=0.9,
        exported_version=1,
    )
    results.save(record, cfg.experiment_dir)


def test_the_same_config_finds_its_results(tmp_path: Path) -> None:
    cfg = make(tmp_path)
    finish(cfg)
    found = finished_before(cfg)
    assert found is not None and found.exported_version == 1


def test_a_change_in_fault_tolerance_alone_does_not_retrain(tmp_path: Path) -> None:
    finish(make(tmp_path))
    waits_longer = make(tmp_path, "fault_tolerance.worker_wait_seconds=3600")
    found = finished_before(waits_longer)
    assert found is not None and found.config_digest == waits_longer.digest()
    assert results.load(waits_longer.experiment_dir / "results.json").config_digest == waits_longer.digest()


def test_a_change_in_what_is_searched_does(tmp_path: Path) -> None:
    finish(make(tmp_path))
    assert finished_before(make(tmp_path, "search.max_trials=500")) is None
    assert finished_before(make(tmp_path, "seed=4")) is None
