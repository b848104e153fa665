"""state.json: where an experiment is, kept by its coordinator and read by every other process.

This is the one answer to "is the search over?" for anyone who cannot ask the coordinator: the
launcher's progress bar, a worker whose coordinator is gone, a later run. The coordinator's own
answer comes from its search control (``fmtune.tuning.control``); it writes what that says here as it
changes, so a finished or crashed run can still be read.

It is also everything the dashboard and ``fmtune report`` show: every trial with its epochs, every
worker, the best so far over time, retraining, the export and the deployment. Both draw from this
state alone, so they cannot disagree.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from fmtune import results
from fmtune.files import replace
from fmtune.layout import ExperimentDir
from fmtune.results import Results, RetrainRecord, now
from fmtune.trials import Epoch, TrialRecord, improves


class Phase(str, enum.Enum):
    SEARCH = "search"
    RETRAIN = "retrain"
    EXPORT = "export"
    DEPLOY = "deploy"  # the exported version through the deployer's gate, publish and checks
    DONE = "done"
    FAILED = "failed"


WorkerStatus = Literal["running", "idle", "silent", "left"]


class WorkerState(BaseModel):
    worker: str
    status: WorkerStatus
    trial_id: str | None = None
    last_seen_at: datetime | None = None
    lease_expires_at: datetime | None = None
    trials_finished: int = 0


class BestPoint(BaseModel):
    at: datetime
    trial_id: str
    score: float


class BudgetSpent(BaseModel):
    """A time budget for the whole pipeline, and how much of it is spent."""

    seconds: float
    used_seconds: float


class Deployment(BaseModel):
    outcome: Literal["exported", "deployed", "refused", "failed"]
    version: int | None = None
    message: str | None = None


class RunState(BaseModel):
    experiment: str
    config_digest: str
    data_fingerprint: str | None = Field(default=None, description="the dataset's, to tell if it changed (fmtune.data)")
    phase: Phase = Phase.SEARCH
    max_trials: int
    trials_finished: int = 0
    trials_running: int = 0
    objective: str
    direction: Literal["max", "min"] = "max"
    best_score: float | None = None
    message: str | None = Field(default=None, description="why the run failed or stopped early")
    updated_at: datetime = Field(default_factory=now)
    # What the dashboard and the report show; empty in a state written before the search began.
    dataset: str | None = None
    family: str | None = None
    algorithm: str | None = None
    epochs_per_trial: int | None = None
    lease_seconds: float | None = None
    started_at: datetime | None = None
    budget: BudgetSpent | None = None
    trials: list[TrialRecord] = Field(default_factory=list)
    workers: list[WorkerState] = Field(default_factory=list)
    best_history: list[BestPoint] = Field(default_factory=list)
    retrain: RetrainRecord | None = None
    retrain_epochs: list[Epoch] = Field(default_factory=list, description="retraining's epochs so far, as they end")
    deploys: bool = False  # whether the run deploys what it exports (a phase of its own)
    failed_in: Phase | None = None  # the phase a failed run was in
    test_accuracy: float | None = None
    exported_version: int | None = None
    deployment: Deployment | None = None
    # The coordinator's writes of its own state (the oracle's files, this one) that failed, and
    # while they fail, why: a full disk shows here before it costs a result.
    state_write_failures: int = 0
    state_write_error: str | None = None

    @property
    def search_ended(self) -> bool:
        return self.phase != Phase.SEARCH


def save(state: RunState, experiment_dir: Path) -> None:
    replace(ExperimentDir(experiment_dir).state, state.model_dump_json(indent=2).encode())


def load(experiment_dir: Path) -> RunState | None:
    """The state on disk, or None when there is none yet (or it cannot be read)."""
    try:
        return RunState.model_validate_json(ExperimentDir(experiment_dir).state.read_bytes())
    except (OSError, ValidationError):
        return None


def from_results(res: Results) -> RunState:
    """The state of a finished run rebuilt from its results.json (a run from before state.json
    held trials, or a results file copied on its own)."""
    maximise = res.objective.direction == "max"
    best: list[BestPoint] = []
    for t in sorted((t for t in res.trials if t.ended_at), key=lambda t: t.ended_at or now()):
        top = best[-1].score if best else None
        if t.status == "COMPLETED" and t.score is not None and t.ended_at and improves(t.score, top, maximise):
            best.append(BestPoint(at=t.ended_at, trial_id=t.trial_id, score=t.score))
    starts = [t.started_at for t in res.trials if t.started_at is not None]
    return RunState(
        experiment=res.experiment,
        config_digest=res.config_digest,
        phase=Phase.DONE,  # results.json is written once the search is over
        max_trials=res.max_trials,
        trials_finished=sum(t.finished for t in res.trials),
        objective=res.objective.name,
        direction=res.objective.direction,
        best_score=best[-1].score if best else None,
        updated_at=res.created_at,
        dataset=res.dataset,
        family=res.family,
        algorithm=res.algorithm,
        started_at=min(starts) if starts else None,
        trials=res.trials,
        best_history=best,
        retrain=res.retrain,
        test_accuracy=res.test_accuracy,
        exported_version=res.exported_version,
        deployment=None
        if res.exported_version is None
        else Deployment(outcome="exported", version=res.exported_version),
    )


def for_experiment(experiment_dir: Path) -> RunState | None:
    """What to show for an experiment dir: its state.json when that holds the trials, else one
    rebuilt from results.json; None when there is neither."""
    state = load(experiment_dir)
    if state is not None and (state.trials or state.phase == Phase.SEARCH):
        return state
    path = ExperimentDir(experiment_dir).results
    try:
        return from_results(results.load(path)) if path.is_file() else state
    except (OSError, ValueError):
        return state
