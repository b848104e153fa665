"""A trial as every reader sees it: one immutable type, from the oracle to results.json, state.json,
the dashboard and reports, with one name for each field (Optuna's ``FrozenTrial`` is the model).

The oracle makes it from Keras Tuner's trial and its own record (``fmtune.tuning.bookkeeping``);
nothing downstream renames or re-derives its fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Keras Tuner's statuses, plus QUEUED for a trial waiting to be handed out (again).
TrialStatus = Literal["RUNNING", "QUEUED", "COMPLETED", "STOPPED", "FAILED", "INVALID", "IDLE"]
FINISHED: frozenset[str] = frozenset({"COMPLETED", "STOPPED", "FAILED"})
"""Statuses a trial keeps for good (INVALID and IDLE ones run again)."""


class Epoch(BaseModel):
    model_config = ConfigDict(frozen=True)

    epoch: int
    metrics: dict[str, float | None]  # None: not a finite number (a diverged trial)


class Requeue(BaseModel):
    """A trial taken back from a worker that went silent (or restarted) before finishing it."""

    model_config = ConfigDict(frozen=True)

    worker: str | None
    at: datetime


class TrialRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    trial_id: str
    status: TrialStatus
    worker: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    score: float | None = None
    best_epoch: int | None = Field(default=None, description="0-based, as Keras Tuner's best_step")
    history: list[Epoch] = Field(default_factory=list)
    epoch_seconds: list[float] = Field(default_factory=list, description="each reported epoch's wall time")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    seconds: float | None = None
    rung: int | None = Field(default=None, description="the highest ASHA rung reached (0: the first)")
    stopped_by: str | None = Field(default=None, description="budget, or the early-stopping rule that stopped it")
    requeues: list[Requeue] = Field(default_factory=list)
    message: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def improves(score: float, best: float | None, maximise: bool) -> bool:
    """Whether ``score`` beats ``best`` (None: nothing yet): the one comparison of "best so far".

    >>> improves(0.9, None, True), improves(0.9, 0.91, True), improves(0.3, 0.4, False)
    (True, False, True)
    """
    return best is None or (score > best if maximise else score < best)


def ranked(trials: Iterable[TrialRecord], maximise: bool) -> list[TrialRecord]:
    """Completed and stopped trials with a score, best first, then the rest in their order."""
    listed = list(trials)
    sign = -1.0 if maximise else 1.0
    scored = sorted((t for t in listed if t.score is not None), key=lambda t: sign * (t.score or 0.0))
    return scored + [t for t in listed if t.score is None]


def best(trials: Iterable[TrialRecord], maximise: bool) -> TrialRecord | None:
    """The best completed trial (stopped trials' scores are from fewer epochs, so they do not count)."""
    top: TrialRecord | None = None
    for t in trials:
        if t.status == "COMPLETED" and t.score is not None and improves(t.score, top.score if top else None, maximise):
            top = t
    return top
