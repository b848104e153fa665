"""state.json: where an experiment is, kept by its coordinator and read by every other process.

This is the one answer to "is the search over?" for anyone who cannot ask the coordinator: the
launcher's progress bar, a worker whose coordinator is gone, a later run. The coordinator's own
answer comes from its oracle (``FmtuneOracle.search_over``); it writes what that says here as it
changes, so a finished or crashed run can still be read.

It is also everything the dashboard and ``fmtune report`` show: every trial with its epochs, every
worker, the best so far over time, retraining, the export and the deployment. Both draw from this
state alone, so they cannot disagree.
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, Field, ValidationError

from fmtune import results
from fmtune.files import replace
from fmtune.layout import ExperimentDir
from fmtune.results import Results, now


class Phase(str, enum.Enum):
    SEARCH = "search"
    RETRAIN = "retrain"
    EXPORT = "export"
    DONE = "done"
    FAILED = "failed"


# A trial's status: Keras Tuner's, plus QUEUED for one waiting to be handed out (again).
TrialStatus = Literal["RUNNING", "QUEUED", "COMPLETED", "STOPPED", "FAILED", "INVALID", "IDLE"]
WorkerStatus = Literal["running", "idle", "silent", "left"]


class Epoch(BaseModel):
    epoch: int
    metrics: dict[str, float | None]  # None: not a finite number (a diverged trial)


class Requeue(BaseModel):
    """A trial taken back from a worker that went silent (or restarted) before finishing it."""

    worker: str | None
    at: datetime


class TrialState(BaseModel):
    trial_id: str
    status: TrialStatus
    worker: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    score: float | None = None
    best_epoch: int | None = None
    history: list[Epoch] = Field(default_factory=list)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float | None = None
    rung: int | None = Field(default=None, description="the highest ASHA rung reached (0: the first)")
    stopped_by: str | None = Field(default=None, description="budget, or the early-stopping rule that stopped it")
    requeues: list[Requeue] = Field(default_factory=list)
    message: str | None = None


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


class Budget(BaseModel):
    """A time budget for the whole pipeline, and how much of it is spent."""

    seconds: float
    used_seconds: float


class RetrainState(BaseModel):
    epochs_run: int
    best_epoch: int
    history: list[Epoch]
    holdout_metrics: dict[str, float | None]
    test_accuracy: float
    test_loss: float
    seconds: float
    train_samples: int


class Deployment(BaseModel):
    outcome: Literal["exported", "deployed", "refused", "failed"]
    version: int | None = None
    message: str | None = None


class RunState(BaseModel):
    experiment: str
    config_digest: str
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
    budget: Budget | None = None
    trials: list[TrialState] = Field(default_factory=list)
    workers: list[WorkerState] = Field(default_factory=list)
    best_history: list[BestPoint] = Field(default_factory=list)
    retrain: RetrainState | None = None
    test_accuracy: float | None = None
    exported_version: int | None = None
    deployment: Deployment | None = None

    @property
    def search_over(self) -> bool:
        return self.phase != Phase.SEARCH


def save(state: RunState, experiment_dir: Path) -> None:
    replace(ExperimentDir(experiment_dir).state, state.model_dump_json(indent=2).encode())


def load(experiment_dir: Path) -> RunState | None:
    """The state on disk, or None when there is none yet (or it cannot be read)."""
    try:
        return RunState.model_validate_json(ExperimentDir(experiment_dir).state.read_bytes())
    except (OSError, ValidationError):
        return None


def retrain_state(res: Results) -> RetrainState | None:
    r = res.retrain
    if r is None:
        return None
    return RetrainState(
        epochs_run=r.epochs_run,
        best_epoch=r.best_epoch,
        history=[Epoch(epoch=e.epoch, metrics=dict(e.metrics)) for e in r.history],
        holdout_metrics=dict(r.holdout_metrics),
        test_accuracy=r.test_accuracy,
        test_loss=r.test_loss,
        seconds=r.seconds,
        train_samples=r.train_samples,
    )


def from_results(res: Results) -> RunState:
    """The state of a finished run rebuilt from its results.json (a run from before state.json
    held trials, or a results file copied on its own)."""
    trials = [
        TrialState(
            trial_id=t.trial_id,
            status=cast(TrialStatus, t.status if t.status in get_args(TrialStatus) else "FAILED"),
            worker=t.worker,
            hyperparameters=t.hyperparameters,
            score=t.score,
            best_epoch=t.best_epoch,
            history=[Epoch(epoch=e.epoch, metrics=dict(e.metrics)) for e in t.history],
            started_at=t.started_at,
            ended_at=t.ended_at,
            seconds=t.seconds,
            message=t.message,
        )
        for t in res.trials
    ]
    maximise = res.objective.direction == "max"
    best: list[BestPoint] = []
    for t in sorted((t for t in trials if t.status == "COMPLETED" and t.score is not None and t.ended_at), key=_end):
        assert t.score is not None and t.ended_at is not None
        if not best or (t.score > best[-1].score if maximise else t.score < best[-1].score):
            best.append(BestPoint(at=t.ended_at, trial_id=t.trial_id, score=t.score))
    starts = [t.started_at for t in trials if t.started_at is not None]
    return RunState(
        experiment=res.experiment,
        config_digest=res.config_digest,
        phase=Phase.DONE,  # results.json is written once the search is over
        max_trials=res.max_trials,
        trials_finished=sum(t.status in ("COMPLETED", "STOPPED", "FAILED") for t in trials),
        objective=res.objective.name,
        direction=res.objective.direction,
        best_score=best[-1].score if best else None,
        updated_at=res.created_at,
        dataset=res.dataset,
        family=res.family,
        algorithm=res.algorithm,
        started_at=min(starts) if starts else None,
        trials=trials,
        best_history=best,
        retrain=retrain_state(res),
        test_accuracy=res.test_accuracy,
        exported_version=res.exported_version,
        deployment=None
        if res.exported_version is None
        else Deployment(outcome="exported", version=res.exported_version),
    )


def _end(t: TrialState) -> datetime:
    assert t.ended_at is not None
    return t.ended_at


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
