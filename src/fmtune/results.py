"""results.json: the record of an experiment, written atomically by the coordinator. Its trials
are ``fmtune.trials.TrialRecord``, the same as state.json's."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from fmtune.config import Objective
from fmtune.files import replace
from fmtune.layout import RESULTS, ExperimentDir, experiments
from fmtune.trials import Epoch, TrialRecord, ranked


def now() -> datetime:
    return datetime.now(timezone.utc)


class RetrainRecord(BaseModel):
    hyperparameters: dict[str, Any]
    train_samples: int
    holdout_samples: int
    epochs_run: int
    best_epoch: int
    history: list[Epoch]
    epoch_seconds: list[float] = Field(default_factory=list)
    last_epoch_share: float = Field(
        default=1.0, description="the share of its steps the last epoch ran: less than 1 when cut short at the deadline"
    )
    warm_start: str | None = Field(default=None, description="the weights retraining started from, if not from scratch")
    holdout_metrics: dict[str, float]
    test_loss: float
    test_accuracy: float
    seconds: float


class Results(BaseModel):
    experiment: str
    dataset: str
    family: str
    algorithm: str
    objective: Objective
    max_trials: int
    config_digest: str
    outcome_digest: str | None = None  # ExperimentConfig.outcome_digest: what decides the outcome
    seed: int | None = None
    data_fingerprint: str | None = None
    trials: list[TrialRecord]
    best_trial_id: str | None
    best_hyperparameters: dict[str, Any] | None
    tuning_seconds: float
    budget_minutes: float | None = None
    retrain_epoch_estimate: float | None = Field(
        default=None, description="what the budget expected a retraining epoch to cost when the search closed (s)"
    )
    timing: dict[str, float] = Field(
        default_factory=dict, description="where the wall time went: startup, search, retrain, export, total (s)"
    )
    retrain: RetrainRecord | None = None
    test_accuracy: float | None = None
    exported_version: int | None = None
    export_path: str | None = None
    created_at: datetime = Field(default_factory=now)

    def ranked(self) -> list[TrialRecord]:
        """Trials by objective, best first; trials without a score last."""
        return ranked(self.trials, self.objective.direction == "max")


def save(results: Results, experiment_dir: Path) -> Path:
    path = ExperimentDir(experiment_dir).results
    replace(path, results.model_dump_json(indent=2).encode(), sync=True)
    return path


def find(path: Path) -> list[Path]:
    """results.json files under a work dir or an experiment dir."""
    if path.is_file():
        return [path]
    return [ExperimentDir(p).results for p in experiments(path, RESULTS)]


def load(path: Path) -> Results:
    return Results.model_validate_json(path.read_text())
