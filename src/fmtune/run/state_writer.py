"""The coordinator's side of state.json: the run state kept up to date as the search goes on.

The state holds every trial, so rebuilding all of it twice a second would cost more with every
trial. A trial that ended never changes again: its JSON is made once and kept, and each write
copies only what changed from the oracle (``FmtuneOracle.live_view``, under its lock) and
re-encodes only that. The serving loop calls ``update`` between its polls, off the request path.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import Any, Literal

import orjson

from fmtune import results, run_state
from fmtune.config import ExperimentConfig
from fmtune.files import replace
from fmtune.layout import ExperimentDir
from fmtune.run_state import Deployment, Phase, RunState
from fmtune.tuning.oracle import FmtuneOracle
from fmtune.tuning.stopping.asha import rungs

log = logging.getLogger("fmtune")
STATE_EVERY_SECONDS = 0.5
MAX_TIME_SHARE = 0.05  # of the serving loop's time spent writing state.json
FINAL = ("COMPLETED", "STOPPED", "FAILED")
MESSAGE_CHARS = 4000  # the end of a trial's traceback is what says what went wrong


def _wall(value: float | None) -> str | None:
    return None if not value else datetime.fromtimestamp(value, tz=timezone.utc).isoformat()


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class TrialCache:
    """Every trial's JSON, re-made only for the trials that changed; who ran what, and when a
    running trial was taken back from its worker."""

    def __init__(self, maximise: bool, rung_epochs: list[int] | None = None):
        self.maximise = maximise
        self.rung_epochs = rung_epochs or []  # ASHA's rungs, as epoch counts (none without ASHA)
        self.fragments: dict[str, bytes] = {}  # trial id -> its JSON
        self.order: list[str] = []  # trial ids in the order they were first seen
        self.watched: set[str] = set()  # trials that may still change
        self.attempts: dict[str, tuple[Any, Any]] = {}  # trial id -> (worker, started) of its run
        self.requeues: dict[str, list[dict[str, Any]]] = {}
        self.finished_by: dict[str, int] = {}  # worker -> trials it finished
        self.best: list[dict[str, Any]] = []
        self._best_score: float | None = None
        self.started = 0  # how much of start_order and end_order has been seen
        self.ended = 0
        self.first_start: float | None = None

    def apply(self, view: dict[str, Any]) -> None:
        now = time.time()
        queued = set(view["queued"])
        for trial_id in sorted(view["trials"], key=_trial_key):
            raw = view["trials"][trial_id]
            if trial_id not in self.fragments:
                self.order.append(trial_id)
            record = raw["record"]
            status = "QUEUED" if trial_id in queued else str(raw["status"])
            attempt = (record.get("worker"), record.get("started"))
            previous = self.attempts.get(trial_id)
            if previous is not None and (status == "QUEUED" or (status == "RUNNING" and attempt != previous)):
                # Its run was abandoned: its worker went silent, or came back and starts over.
                self.requeues.setdefault(trial_id, []).append({"worker": previous[0], "at": _wall(now)})
            self.attempts.pop(trial_id, None)
            if status == "RUNNING":
                self.attempts[trial_id] = attempt
            started = record.get("started")
            if started and (self.first_start is None or started < self.first_start):
                self.first_start = started
            self.fragments[trial_id] = orjson.dumps(self._trial(trial_id, status, raw, view["holders"]))
            if status in FINAL:
                self.watched.discard(trial_id)
            else:
                self.watched.add(trial_id)
        self.started = view["start_order"]
        ended = [t for t in view["end_order"] if t in view["trials"]]
        self.ended += len(view["end_order"])
        for trial_id in sorted(set(ended), key=lambda t: view["trials"][t]["record"].get("ended") or 0):
            raw = view["trials"][trial_id]
            worker = raw["record"].get("worker")
            if worker:
                self.finished_by[worker] = self.finished_by.get(worker, 0) + 1
            score = _number(raw["score"])
            if raw["status"] == "COMPLETED" and score is not None and self._improves(score):
                self._best_score = score
                at = _wall(raw["record"].get("ended")) or _wall(now)
                self.best.append({"at": at, "trial_id": trial_id, "score": score})

    def _rung(self, epochs: int) -> int | None:
        """The highest ASHA rung a trial with this many epochs reached (0: the first), if any."""
        reached = [r for r in self.rung_epochs if r <= epochs]
        return len(reached) - 1 if reached else None

    def _improves(self, score: float) -> bool:
        best = self._best_score
        return best is None or (score > best if self.maximise else score < best)

    def _trial(self, trial_id: str, status: str, raw: dict[str, Any], holders: dict[str, str]) -> dict[str, Any]:
        record = raw["record"]
        epochs: dict[int, dict[str, float | None]] = {}
        for name, points in raw["curves"].items():
            for step, value in points:
                epochs.setdefault(step, {})[name] = _number(value)
        started, ended = record.get("started"), record.get("ended")
        message = raw["message"]
        return {
            "trial_id": trial_id,
            "status": status,
            "worker": holders.get(trial_id) or record.get("worker"),
            "hyperparameters": raw["hyperparameters"],
            "score": _number(raw["score"]),
            "best_epoch": raw["best_step"],
            "history": [{"epoch": step, "metrics": epochs[step]} for step in sorted(epochs)],
            "started_at": _wall(started),
            "ended_at": _wall(ended),
            "seconds": (ended - started) if started and ended else None,
            "rung": self._rung(len(epochs)),
            "stopped_by": record.get("stopped_by"),
            "requeues": self.requeues.get(trial_id, []),
            "message": message[-MESSAGE_CHARS:] if message else None,
        }

    def trials_json(self) -> bytes:
        return b"[" + b",".join(self.fragments[t] for t in self.order) + b"]"


def _trial_key(trial_id: str) -> tuple[int, str]:
    return (int(trial_id), trial_id) if trial_id.isdigit() else (1 << 62, trial_id)


class WorkerWatch:
    """Each worker's status from its calls: running or idle while it calls, silent once it has
    not called for a while (until it calls again), left once told the search is over."""

    def __init__(self, silent_after: float, lease_seconds: float):
        self.silent_after, self.lease_seconds = silent_after, lease_seconds
        self.sticky: dict[str, tuple[str, float]] = {}  # worker -> (silent or left, its last call then)

    def workers(self, view: dict[str, Any], finished_by: dict[str, int]) -> list[dict[str, Any]]:
        clock, now = view["clock"], time.time()
        calls: dict[str, float] = view["last_calls"]
        held = {worker: trial_id for trial_id, worker in view["holders"].items()}
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
            elif trial_id is None and worker not in view["tuner_ids"]:
                status = "left"  # told the search is over (a silent one was dropped after its lease)
            else:
                status = "running" if trial_id else "idle"
            if status in ("silent", "left") and last is not None:
                self.sticky[worker] = (status, last)
            deadline = view["trials"].get(trial_id, {}).get("deadline") if trial_id else None
            out.append(
                {
                    "worker": worker,
                    "status": status,
                    "trial_id": trial_id,
                    "last_seen_at": _wall(now - age) if last is not None else None,
                    "lease_expires_at": _wall(now + deadline - clock) if deadline is not None else None,
                    "trials_finished": finished_by.get(worker, 0),
                }
            )
        return out


class StateWriter:
    """Keeps state.json up to date with the oracle's progress, at most every STATE_EVERY_SECONDS,
    or less often when a write costs more than MAX_TIME_SHARE of that (and at once when the phase
    changes)."""

    def __init__(self, cfg: ExperimentConfig, oracle: FmtuneOracle, deploys: bool = False):
        self.oracle = oracle
        self.deploys = deploys
        tolerance = cfg.fault_tolerance
        self.state = RunState(
            experiment=cfg.name,
            config_digest=cfg.digest(),
            max_trials=cfg.search.max_trials,
            objective=cfg.search.objective.name,
            direction=cfg.search.objective.direction,
            dataset=cfg.dataset,
            family=cfg.search.family,
            algorithm=cfg.search.algorithm,
            epochs_per_trial=cfg.search.epochs,
            lease_seconds=tolerance.lease_seconds,
        )
        self.experiment_dir = cfg.experiment_dir
        asha = cfg.search.asha
        self.trials = TrialCache(
            cfg.search.objective.direction == "max",
            rungs(asha.grace_epochs, asha.reduction_factor, cfg.search.epochs) if asha.enabled else None,
        )
        silent_after = min(tolerance.lease_seconds / 2, max(2 * tolerance.heartbeat_seconds, 1.0))
        self.watch = WorkerWatch(silent_after, tolerance.lease_seconds)
        self._workers: list[dict[str, Any]] = []
        self._seen_all = False
        self._written_at = 0.0
        self._interval = STATE_EVERY_SECONDS

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
        if self.state.phase == Phase.EXPORT and self.deploys:
            from fmtune.deploy import DeployError, GateRefused

            if isinstance(exc, DeployError):
                outcome: Literal["refused", "failed"] = "refused" if isinstance(exc, GateRefused) else "failed"
                self.state = self.state.model_copy(update={"deployment": Deployment(outcome=outcome, message=message)})
        self.update(Phase.FAILED, message=message, force=True)

    def refresh(self) -> None:
        """Take what changed in the oracle since the last time."""
        cache = self.trials
        view = self.oracle.live_view(set(cache.watched), cache.started, cache.ended, not self._seen_all)
        self._seen_all = True
        cache.apply(view)
        self._workers = self.watch.workers(view, cache.finished_by)
        finished, running, best = view["progress"]
        first = cache.first_start
        budget = self.oracle.budget
        self.state = self.state.model_copy(
            update={
                "budget": run_state.Budget(seconds=budget.seconds, used_seconds=budget.used()) if budget else None,
                "trials_finished": finished,
                "trials_running": running,
                "best_score": _number(best),
                "started_at": self.state.started_at
                or (datetime.fromtimestamp(first, tz=timezone.utc) if first else None),
            }
        )

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
        out: dict[str, Any] = {"retrain": run_state.retrain_state(res), "test_accuracy": res.test_accuracy}
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
        replace(ExperimentDir(self.experiment_dir).state, self.content())
