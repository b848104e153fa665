"""The coordinator's side of state.json: the run state kept up to date as the search goes on.

The state holds every trial, so rebuilding all of it twice a second would cost more with every
trial. A trial that ended never changes again: its JSON is made once and kept, and each write
copies only what changed from the oracle (``fmtune.tuning.live_view``, under its lock) and
re-encodes only that. The serving loop calls ``update`` between its polls, off the request path.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime
from typing import Any, Literal

import orjson

from fmtune import results, run_state
from fmtune.config import ExperimentConfig
from fmtune.files import replace
from fmtune.layout import ExperimentDir
from fmtune.run.budget import Budget
from fmtune.run_state import Deployment, Phase, RunState
from fmtune.trials import Epoch, improves
from fmtune.tuning.bookkeeping import wall
from fmtune.tuning.live_view import LiveView, live_view, trial_key
from fmtune.tuning.oracle import FmtuneOracle

log = logging.getLogger("fmtune")
STATE_EVERY_SECONDS = 0.5
MAX_TIME_SHARE = 0.05  # of the serving loop's time spent writing state.json


class TrialCache:
    """Every trial's JSON, re-made only for the trials that changed, and the best so far over time."""

    def __init__(self, maximise: bool):
        self.maximise = maximise
        self.fragments: dict[str, bytes] = {}  # trial id -> its JSON
        self.order: list[str] = []  # trial ids in the order they were first seen
        self.watched: set[str] = set()  # trials that may still change
        self.finished_by: dict[str, int] = {}  # worker -> trials it finished
        self.best: list[dict[str, Any]] = []
        self._best_score: float | None = None
        self.started = 0  # how much of the oracle's start and end orders has been seen
        self.ended = 0
        self.first_start: datetime | None = None

    def apply(self, view: LiveView) -> None:
        for trial_id in sorted(view.trials, key=trial_key):
            trial = view.trials[trial_id]
            if trial_id not in self.fragments:
                self.order.append(trial_id)
            if trial.started_at and (self.first_start is None or trial.started_at < self.first_start):
                self.first_start = trial.started_at
            self.fragments[trial_id] = orjson.dumps(trial.model_dump(mode="json"))
            if trial.finished:
                self.watched.discard(trial_id)
            else:
                self.watched.add(trial_id)
        self.started = view.started
        self.ended += len(view.ended)
        ended = [view.trials[t] for t in set(view.ended) if t in view.trials]
        for trial in sorted(ended, key=lambda t: t.ended_at or results.now()):
            if trial.worker:
                self.finished_by[trial.worker] = self.finished_by.get(trial.worker, 0) + 1
            if (
                trial.status == "COMPLETED"
                and trial.score is not None
                and improves(trial.score, self._best_score, self.maximise)
            ):
                self._best_score = trial.score
                at = (trial.ended_at or results.now()).isoformat()
                self.best.append({"at": at, "trial_id": trial.trial_id, "score": trial.score})

    def trials_json(self) -> bytes:
        return b"[" + b",".join(self.fragments[t] for t in self.order) + b"]"


class WorkerWatch:
    """Each worker's status from its calls: running or idle while it calls, silent once it has
    not called for a while (until it calls again), left once told the search is over."""

    def __init__(self, silent_after: float):
        self.silent_after = silent_after
        self.sticky: dict[str, tuple[str, float]] = {}  # worker -> (silent or left, its last call then)

    def workers(self, view: LiveView, finished_by: dict[str, int]) -> list[dict[str, Any]]:
        clock, now = view.clock, time.time()
        calls = view.last_calls
        held = {worker: trial_id for trial_id, worker in view.holders.items()}
        out = []
        for worker in sorted(set(calls) | set(held)):
            last = calls.get(worker)
            age = clock - last if last is not None else math.inf
            trial_id = held.get(worker)
            sticky = self.sticky.get(worker)
            if sticky is not None and sticky[1] != last:
                sticky = None  # it called again
            if sticky is not None:
                status = sticky[0]
            elif age > self.silent_after:
                status = "silent"
            elif trial_id is None and worker not in view.waiting:
                status = "left"  # told the search is over (a silent one was dropped after its lease)
            else:
                status = "running" if trial_id else "idle"
            if status in ("silent", "left") and last is not None:
                self.sticky[worker] = (status, last)
            deadline = view.lease_deadlines.get(trial_id) if trial_id else None
            out.append(
                {
                    "worker": worker,
                    "status": status,
                    "trial_id": trial_id,
                    "last_seen_at": wall(now - age) if last is not None else None,
                    "lease_expires_at": wall(now + deadline - clock) if deadline is not None else None,
                    "trials_finished": finished_by.get(worker, 0),
                }
            )
        return out


class StateWriter:
    """Keeps state.json up to date with the oracle's progress, at most every STATE_EVERY_SECONDS,
    or less often when a write costs more than MAX_TIME_SHARE of that (and at once when the phase
    changes)."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        oracle: FmtuneOracle,
        budget: Budget | None,
        data_fingerprint: str | None = None,
        deploys: bool = False,
    ):
        self.oracle, self.budget = oracle, budget
        self.deploys = deploys
        tolerance = cfg.fault_tolerance
        self.state = RunState(
            experiment=cfg.name,
            config_digest=cfg.digest(),
            data_fingerprint=data_fingerprint,
            max_trials=cfg.search.max_trials,
            objective=cfg.search.objective.name,
            direction=cfg.search.objective.direction,
            dataset=cfg.dataset_name,
            family=cfg.search.model,
            algorithm=cfg.search.algorithm,
            epochs_per_trial=cfg.search.epochs,
            lease_seconds=tolerance.lease_seconds,
            deploys=deploys,
        )
        self.experiment_dir = cfg.experiment_dir
        self.trials = TrialCache(cfg.search.objective.direction == "max")
        self.watch = WorkerWatch(min(tolerance.lease_seconds / 2, max(2 * tolerance.heartbeat_seconds, 1.0)))
        self._workers: list[dict[str, Any]] = []
        self._seen_all = False
        self._written_at = 0.0
        self._interval = STATE_EVERY_SECONDS
        self._failures = 0  # failed writes of state.json
        self._error: str | None = None  # the last one's, while they fail

    def update(self, phase: Phase | None = None, message: str | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and phase is None and now - self._written_at < self._interval:
            return
        self.refresh()
        changes: dict[str, Any] = {}
        if phase is not None:
            changes["phase"] = phase
            changes.update(self._outcome(phase))
        if message is not None:
            changes["message"] = message
        self.state = self.state.model_copy(update=changes)
        self.write()
        self._written_at = time.monotonic()
        # A large search under load makes a write dearer: the writer keeps to a small share of the
        # coordinator's time, so the workers' calls come first.
        self._interval = max(STATE_EVERY_SECONDS, (self._written_at - now) / MAX_TIME_SHARE)

    def failed(self, exc: BaseException) -> None:
        """The run stopped with ``exc``: record why, and a refused or failed deployment as such."""
        message = str(exc) or type(exc).__name__
        if self.state.phase in (Phase.EXPORT, Phase.DEPLOY) and self.deploys:
            from fmtune.deploy import DeployError, GateRefused

            if isinstance(exc, DeployError):
                outcome: Literal["refused", "failed"] = "refused" if isinstance(exc, GateRefused) else "failed"
                self.state = self.state.model_copy(update={"deployment": Deployment(outcome=outcome, message=message)})
        if self.state.phase != Phase.FAILED:
            self.state = self.state.model_copy(update={"failed_in": self.state.phase})
        self.update(Phase.FAILED, message=message, force=True)

    def retrain_epoch(self, epoch: Epoch) -> None:
        """A retraining epoch ended: on the page at once (the search is over, so a write is cheap)."""
        self.state = self.state.model_copy(update={"retrain_epochs": [*self.state.retrain_epochs, epoch]})
        self.write()

    def refresh(self) -> None:
        """Take what changed in the oracle since the last time."""
        cache = self.trials
        view = live_view(self.oracle, set(cache.watched), cache.started, cache.ended, not self._seen_all)
        self._seen_all = True
        cache.apply(view)
        self._workers = self.watch.workers(view, cache.finished_by)
        finished, running, best = view.progress
        budget = self.budget
        self.state = self.state.model_copy(
            update={
                "budget": run_state.BudgetSpent(seconds=budget.seconds, used_seconds=budget.used()) if budget else None,
                "trials_finished": finished,
                "trials_running": running,
                "best_score": best,
                "started_at": self.state.started_at or cache.first_start,
                **self._write_health(),
            }
        )

    def _write_health(self) -> dict[str, Any]:
        """The failed writes of the oracle's files and of state.json, and the current error if any."""
        oracle = self.oracle.persister.health
        return {
            "state_write_failures": oracle.failures + self._failures,
            "state_write_error": oracle.error or self._error,
        }

    def _outcome(self, phase: Phase) -> dict[str, Any]:
        """Retraining, the export and the deployment, from results.json once they are in it."""
        if phase not in (Phase.EXPORT, Phase.DONE):
            return {}
        path = ExperimentDir(self.experiment_dir).results
        try:
            res = results.load(path)
        except (OSError, ValueError):
            return {}
        if res.config_digest != self.state.config_digest:
            return {}
        out: dict[str, Any] = {"retrain": res.retrain, "test_accuracy": res.test_accuracy}
        if phase == Phase.DONE and res.exported_version is not None:
            out["exported_version"] = res.exported_version
            out["deployment"] = Deployment(
                outcome="deployed" if self.deploys else "exported", version=res.exported_version
            )
        return out

    def content(self) -> bytes:
        """state.json's bytes: the small part encoded anew, the trials' kept JSON joined in."""
        head = self.state.model_dump(mode="json", exclude={"trials", "workers", "best_history"})
        head["updated_at"] = results.now().isoformat()
        head["workers"] = self._workers
        head["best_history"] = self.trials.best
        encoded = orjson.dumps(head)
        return encoded[:-1] + b',"trials":' + self.trials.trials_json() + b"}"

    def write(self) -> None:
        """Write state.json; a failure (a full disk) is counted and logged once while it lasts,
        and the next update tries again, as state.json is rewritten whole each time."""
        for _ in range(2):  # once more after a run of failures, so that it no longer shows
            try:
                replace(ExperimentDir(self.experiment_dir).state, self.content())
            except OSError as exc:
                first = self._error is None
                self._failures += 1
                self._error = f"{type(exc).__name__}: {exc}"
                if first:
                    log.error("could not write state.json (%s); retrying with every update", self._error)
                return
            if self._error is None:
                return
            log.warning("state.json is written again, after %d failed write(s)", self._failures)
            self._error = None
            self.state = self.state.model_copy(update=self._write_health())
