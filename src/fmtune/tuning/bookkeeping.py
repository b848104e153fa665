"""What the oracle keeps beside Keras Tuner's trials: who ran each trial and when, each epoch's
time, what stopped it, who it was taken back from, the best so far, and the log lines.

One clock (wall time, injected) stamps all of it, so a test moves every time in the search by
hand. Trials leave the engine as ``fmtune.trials.TrialRecord`` (``freeze``), and nowhere else.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fmtune.logs import trial_fields
from fmtune.text import format_values, last_line
from fmtune.trials import Epoch, Requeue, TrialRecord, TrialStatus, improves
from fmtune.tuning.kt_internals import FINISHED, Status

log = logging.getLogger("fmtune")
MESSAGE_CHARS = 4000  # the end of a trial's traceback is what says what went wrong


@dataclass
class Attempt:
    """fmtune's record of one trial (its current run), kept in the oracle's saved state."""

    worker: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    reported_at: float | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    stopped_by: str | None = None
    requeues: list[tuple[str | None, float]] = field(default_factory=list)  # (worker, when)

    def copy(self) -> Attempt:
        clone = copy.copy(self)
        clone.epoch_seconds, clone.requeues = list(self.epoch_seconds), list(self.requeues)
        return clone


@dataclass(frozen=True)
class Copied:
    """A trial's fields as they were at one moment, for ``Book.freeze``."""

    trial_id: str
    status: TrialStatus
    holder: str | None
    values: dict[str, Any]
    score: float | None
    best_step: int | None
    message: str | None
    curves: dict[str, list[tuple[int, float]]]
    attempt: Attempt


def wall(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


def finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def active_values(hp: Any) -> dict[str, Any]:
    """Only the values that shaped the model (inactive conditional ones are left out)."""
    return {hp_.name: hp.values[hp_.name] for hp_ in hp.space if hp.is_active(hp_) and hp_.name in hp.values} | {
        k: v for k, v in hp.values.items() if k.startswith("tuner/")
    }


class Book:
    """The oracle's bookkeeping (see the module docstring). Called under the oracle's lock."""

    def __init__(self, objective: Any, clock: Callable[[], float], rung: Callable[[int], int | None]):
        self.objective, self.clock, self.rung = objective, clock, rung
        self.attempts: dict[str, Attempt] = {}
        self.finished: set[str] = set()
        self.best_score: float | None = None
        self.best_trial: str | None = None
        self.unlogged: list[str] = []  # ended trials whose line waits for their state to be on disk

    def attempt(self, trial_id: str) -> Attempt:
        return self.attempts.setdefault(trial_id, Attempt())

    def started(self, trial_id: str, worker: str, values: dict[str, Any]) -> None:
        requeues = self.attempt(trial_id).requeues
        self.attempts[trial_id] = Attempt(worker=worker, started_at=self.clock(), requeues=requeues)
        log.info(
            "trial %s started on %s: %s",
            trial_id,
            worker,
            format_values(values),
            extra=trial_fields(trial_id, worker, hyperparameters=values),
        )

    def requeued(self, trial_id: str) -> None:
        """Its worker went silent or came back without it: the run it had is abandoned."""
        entry = self.attempt(trial_id)
        entry.requeues.append((entry.worker, self.clock()))
        entry.epoch_seconds, entry.reported_at = [], None

    def reported(self, trial_id: str) -> None:
        """Note how long the epoch just reported took (since the trial's start or its last report)."""
        entry, now = self.attempt(trial_id), self.clock()
        since = next((t for t in (entry.reported_at, entry.started_at) if t is not None), now)
        entry.epoch_seconds.append(round(now - since, 3))
        entry.reported_at = now

    def stopped(self, trial_id: str, by: str, epoch: int, why: str) -> None:
        entry = self.attempt(trial_id)
        entry.stopped_by = by
        log.info(
            "trial %s stopped at epoch %d %s",
            trial_id,
            epoch + 1,
            why,
            extra=trial_fields(trial_id, entry.worker, epoch=epoch + 1, stopped_by=by),
        )

    def ended(self, trial: Any) -> None:
        self.attempt(trial.trial_id).ended_at = self.clock()
        self.note(trial)

    def note(self, trial: Any) -> None:
        """Count a trial's final status, and its score towards the best so far."""
        if trial.status not in FINISHED:
            self.finished.discard(trial.trial_id)
            return
        self.finished.add(trial.trial_id)
        score = trial.score if trial.status == Status.COMPLETED else None
        if score is not None and improves(score, self.best_score, self.objective.direction == "max"):
            self.best_score, self.best_trial = score, trial.trial_id

    def later_epochs(self, trial_id: str) -> list[float]:
        """A trial's epoch times without its first, which also builds and traces the model."""
        return list(self.attempt(trial_id).epoch_seconds[1:]) if trial_id in self.attempts else []

    def copy(self, trial: Any, status: TrialStatus | None = None, holder: str | None = None) -> Copied:
        """What ``freeze`` needs of a trial, copied (cheaply, under the oracle's lock)."""
        entry = self.attempts.get(trial.trial_id, Attempt())
        return Copied(
            trial_id=trial.trial_id,
            status=status or str(trial.status),  # type: ignore[arg-type]
            holder=holder,
            values=active_values(trial.hyperparameters),
            score=trial.score,
            best_step=trial.best_step,
            message=trial.message,
            curves={name: [(o.step, o.mean()) for o in h.get_history()] for name, h in trial.metrics.metrics.items()},
            attempt=entry.copy(),
        )

    def freeze(self, copied: Copied) -> TrialRecord:
        """The trial as every reader sees it (needs no lock)."""
        entry = copied.attempt
        per_epoch: dict[int, dict[str, float | None]] = {}
        for name, points in copied.curves.items():
            for step, value in points:
                per_epoch.setdefault(int(step), {})[name] = finite(value)
        started, ended = entry.started_at, entry.ended_at
        message = copied.message
        return TrialRecord(
            trial_id=copied.trial_id,
            status=copied.status,
            worker=copied.holder or entry.worker,
            hyperparameters=copied.values,
            score=finite(copied.score),
            best_epoch=copied.best_step,
            history=[Epoch(epoch=e, metrics=m) for e, m in sorted(per_epoch.items())],
            epoch_seconds=entry.epoch_seconds,
            started_at=wall(started),
            ended_at=wall(ended),
            seconds=(ended - started) if started is not None and ended is not None else None,
            rung=self.rung(len(per_epoch)),
            stopped_by=entry.stopped_by,
            requeues=[Requeue(worker=w, at=datetime.fromtimestamp(at, tz=timezone.utc)) for w, at in entry.requeues],
            message=message[-MESSAGE_CHARS:] if message else None,
        )

    def log_end(self, trial: Any, max_trials: int | None) -> None:
        entry = self.attempt(trial.trial_id)
        best_text = "n/a" if self.best_score is None else f"{self.best_score:.4f}"
        ended = entry.ended_at or self.clock()
        where = f"[trial {trial.trial_id} on {entry.worker}, {ended - (entry.started_at or ended):.0f}s]"
        progress = f"trial {len(self.finished)}/{max_trials or '?'}"
        fields = trial_fields(trial.trial_id, entry.worker, status=str(trial.status), score=trial.score)
        if trial.status == Status.COMPLETED:
            log.info(
                "%s done: %s=%.4f (best %s) %s",
                progress,
                self.objective.name,
                trial.score,
                best_text,
                where,
                extra=fields,
            )
        elif trial.status in FINISHED:
            reason = last_line(trial.message, "stopped early")
            log.info("%s %s: %s (best %s) %s", progress, trial.status.lower(), reason, best_text, where, extra=fields)
        else:
            log.info("trial %s failed and will be retried %s", trial.trial_id, where, extra=fields)

    def get_state(self) -> dict[str, Attempt]:
        """The record as oracle.json keeps it: orjson writes dataclasses as they are, so it is not
        copied (oracle.json is encoded many times a second, under the oracle's lock)."""
        return self.attempts

    def set_state(self, state: dict[str, Any]) -> None:
        self.attempts = {
            trial_id: Attempt(**{**raw, "requeues": [tuple(r) for r in raw.get("requeues", [])]})
            for trial_id, raw in state.items()
        }


class Refusals:
    """Calls the coordinator refused, counted per worker and kind (a status view can show who
    misbehaves); each (worker, kind) is logged once, with its first reason, so a worker that keeps
    trying cannot flood the log. Honest workers are refused too, rarely: a report after their
    lease ran out is ``not held``, logged at info."""

    QUIET = frozenset({"not held"})  # what honest workers meet after a lost lease
    MAX_KEYS = 1000  # distinct (worker, kind) pairs kept; made-up ids beyond it count as "others"

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def note(self, worker: str, kind: str, reason: str, where: str | None = None) -> None:
        """Count a refused ``kind`` of call from ``worker`` (``where``: its address, for the log)."""
        key = (worker[:64], kind)
        if key not in self.counts and len(self.counts) >= self.MAX_KEYS:
            key = ("others", kind)
        first = key not in self.counts
        self.counts[key] = self.counts.get(key, 0) + 1
        if first:
            level = logging.INFO if kind in self.QUIET else logging.WARNING
            log.log(level, "refused %s from %s: %s", kind, where or key[0], reason)

    def by_worker(self) -> dict[str, dict[str, int]]:
        """worker -> kind -> how many calls of that kind were refused."""
        found: dict[str, dict[str, int]] = {}
        for (worker, kind), count in sorted(self.counts.items()):
            found.setdefault(worker, {})[kind] = count
        return found

    def total(self) -> int:
        return sum(self.counts.values())
