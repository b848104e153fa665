"""The chief's oracle: Keras Tuner's own, plus leases, a record, median stopping and a clean abort.

Keras Tuner alone waits forever for a worker that died mid-trial. Here every running trial has a
lease that the worker's heartbeats and reports renew; a trial whose lease runs out goes back to the
queue and its worker is forgotten, so the search always ends. Reports from a worker that no longer
holds the trial are refused (answered STOPPED), so no trial is counted twice.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import keras_tuner as kt
import numpy as np
from keras_tuner.src import protos
from keras_tuner.src.engine import conditions, metrics_tracking
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine.hyperparameters import HyperParameters
from keras_tuner.src.engine.oracle import LOCKS, THREADS

from fmtune.config import ExperimentConfig, FaultTolerance
from fmtune.report import format_values
from fmtune.tuning.persist import Persister, oracle_json, recover, rewrite, trial_json
from fmtune.tuning.suggest import GPSuggester, Observations, SuggestionQueue

log = logging.getLogger("fmtune")
Status = trial_module.TrialStatus
# Type checkers see the mixin as an Oracle; at run time it is mixed into the chosen oracle class.
_OracleBase: type = kt.Oracle if TYPE_CHECKING else object
ORACLE_CLASSES: dict[str, type[kt.Oracle]] = {
    "bayesian": kt.oracles.BayesianOptimizationOracle,
    "random": kt.oracles.RandomSearchOracle,
    "hyperband": kt.oracles.HyperbandOracle,
    "grid": kt.oracles.GridSearchOracle,
}
FINISHED = (Status.COMPLETED, Status.FAILED, Status.STOPPED)
SUGGESTION_WAIT_SECONDS = 30.0
F = TypeVar("F", bound=Callable[..., Any])


def locked(func: F) -> F:
    """Keras Tuner's ``synchronized``, but released when the call raises (Keras Tuner's keeps the
    lock then, which deadlocks a server that answers calls on more than one thread). Keras Tuner's
    own synchronized methods called inside see the lock as theirs and leave it alone."""

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = threading.current_thread().name
        if THREADS[self] == name:
            return func(self, *args, **kwargs)
        with LOCKS[self]:
            THREADS[self] = name
            try:
                return func(self, *args, **kwargs)
            finally:
                THREADS[self] = None

    return wrapper  # type: ignore[return-value]


class _QuickCopy(HyperParameters):
    """Keras Tuner copies the whole search space for every trial through its config (~3 ms);
    the hyperparameter objects are never changed after they are declared, so sharing them is safe."""

    def copy(self) -> HyperParameters:
        new = copy.copy(self)
        new.__class__ = HyperParameters
        new._hps = type(self._hps)(list, {name: list(hps) for name, hps in self._hps.items()})
        new._space, new.values = list(self._space), dict(self.values)
        new._conditions, new._name_scopes = list(self._conditions), list(self._name_scopes)
        new.active_scopes, new.inactive_scopes = list(self.active_scopes), list(self.inactive_scopes)
        return new


def _parent_to_proto(self: conditions.Parent) -> Any:
    """keras-tuner 1.4.8's ``Parent.to_proto`` prints a debug line on every call; same code, silent."""
    first = self.values[0]
    kind = (
        "string_value"
        if isinstance(first, str)
        else "boolean_value"
        if isinstance(first, bool)
        else "int_value"
        if isinstance(first, int)
        else "float_value"
    )
    proto = protos.get_proto()
    values = [proto.Value(**{kind: v}) for v in self.values]
    return proto.Condition(parent=proto.Condition.Parent(name=self.name, values=values))


def _observation_mean(self: metrics_tracking.MetricObservation) -> float:
    """Keras Tuner's ``np.mean`` of an epoch's values; with one execution that is its one value.
    Every report recomputes the best value over all epochs so far, twice: numpy on one-element
    lists was a sixth of the coordinator's time at 128 workers."""
    return self.value[0] if len(self.value) == 1 else float(np.mean(self.value))


def _best_value(self: metrics_tracking.MetricHistory) -> float | None:
    """Keras Tuner's ``np.nanmin``/``np.nanmax`` over the epochs' means, in plain Python."""
    values = [obs.mean() for obs in self._observations.values()]
    if not values:
        return None
    numbers = [v for v in values if v == v]  # NaN is the one value not equal to itself
    if not numbers:
        return float("nan")
    return min(numbers) if self.direction == "min" else max(numbers)


conditions.Parent.to_proto = _parent_to_proto
metrics_tracking.MetricObservation.mean = _observation_mean
metrics_tracking.MetricHistory.get_best_value = _best_value


def active_values(hp: kt.HyperParameters) -> dict[str, Any]:
    """Only the values that shaped the model (inactive conditional ones are left out)."""
    return {hp_.name: hp.values[hp_.name] for hp_ in hp.space if hp.is_active(hp_) and hp_.name in hp.values} | {
        k: v for k, v in hp.values.items() if k.startswith("tuner/")
    }


class FmtuneOracle(_OracleBase):
    """Mixin for a Keras Tuner oracle (see the module docstring). Its bookkeeping is part of the
    oracle's saved state, so a restarted coordinator knows who held which trial."""

    create_may_wait = False  # whether create_trial can block (for a suggestion), so needs a thread

    def __init__(self, *args: Any, tolerance: FaultTolerance | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tolerance = tolerance or FaultTolerance()
        self.record: dict[str, dict[str, Any]] = {}
        self.leases: dict[str, float] = {}  # trial_id -> monotonic deadline
        self.last_seen: dict[str, float] = {}  # tuner_id -> monotonic time of its last call
        self.early_stopped: set[str] = set()
        self.abort_reason: str | None = None
        self._resumed: dict[str, Any] = {}
        self._unlogged: list[str] = []  # ended trials whose line waits for their state to be on disk
        self.persister = Persister(self)
        self._trial_files: dict[str, Path] = {}
        self._hp_configs: dict[str, tuple[Any, dict[str, Any]]] = {}  # trial id -> (values, their config)
        self._best_score: float | None = None  # kept as trials end: sorting them all per end is O(n log n)
        self._finished: set[str] = set()  # likewise: trials with a final status
        self._reporting = False

    # -- threads that work behind the RPCs -------------------------------------------------------

    def start_background(self) -> None:
        self.persister.start()

    def stop_background(self) -> None:
        self.persister.stop()

    # -- handing out and taking back trials ------------------------------------------------------

    @locked
    def create_trial(self, tuner_id: str) -> Any:
        self.hyperparameters.__class__ = _QuickCopy  # cheap per-trial copies of the space
        self.last_seen[tuner_id] = time.monotonic()
        if self.abort_reason is not None:
            self.tuner_ids.discard(tuner_id)
            return trial_module.Trial(self.get_space(), status=Status.STOPPED)
        held = self.ongoing_trials.get(tuner_id)
        if held is not None:
            # A worker asking again while holding a trial has restarted: it re-runs the trial from
            # scratch, so the epochs it reported before the restart no longer count.
            held.metrics = metrics_tracking.MetricsTracker()
            log.info("%s came back: it re-runs trial %s from the start", tuner_id, held.trial_id)
        trial = super().create_trial(tuner_id)
        if trial.status == Status.RUNNING:
            self.record.setdefault(trial.trial_id, {}).update(worker=tuner_id, started=time.time(), ended=None)
            self._renew(trial.trial_id)
            values = format_values(active_values(trial.hyperparameters))
            log.info("trial %s started on %s: %s", trial.trial_id, tuner_id, values)
        return trial

    def _random_values(self) -> dict[str, Any] | None:
        """Keras Tuner's, with the same values from the same seed, minus its rebuilding of the
        space for every trial (~2 ms): a value is drawn when its conditions hold."""
        for _ in range(self._max_collisions + 1):
            values: dict[str, Any] = {}
            for hp in self.hyperparameters.space:
                if all(condition.is_active(values) for condition in hp.conditions):
                    values[hp.name] = hp.random_sample(self._seed_state)
                    self._seed_state += 1
            if not self._duplicate(values):
                return values
        return None

    def holder(self, trial_id: str) -> str | None:
        return next((tid for tid, t in self.ongoing_trials.items() if t.trial_id == trial_id), None)

    def _renew(self, trial_id: str) -> None:
        self.leases[trial_id] = time.monotonic() + self.tolerance.lease_seconds

    def _refused(self, trial_id: str, caller: str | None) -> bool:
        """A report about a trial the caller does not hold (any more) is refused."""
        if caller is not None:
            self.last_seen[caller] = time.monotonic()
        holder = self.holder(trial_id)
        return holder is None or (caller is not None and caller != holder)

    @locked
    def heartbeat(self, trial_id: str, caller: str | None) -> Any:
        """Renew the caller's lease; the answer's status says whether it should go on."""
        trial = self.trials.get(trial_id)
        if trial is None:
            return trial_module.Trial(self.get_space(), trial_id=trial_id, status=Status.STOPPED)
        if self._refused(trial_id, caller):
            return trial_module.Trial(trial.hyperparameters, trial_id=trial_id, status=Status.STOPPED)
        self._renew(trial_id)
        return trial

    @locked
    def reap(self) -> list[str]:
        """Give the trials of silent workers back to the queue; forget those workers."""
        now = time.monotonic()
        lost = [(tid, t) for tid, t in self.ongoing_trials.items() if self.leases.get(t.trial_id, now) < now]
        for tuner_id, trial in lost:
            del self.ongoing_trials[tuner_id]
            self.tuner_ids.discard(tuner_id)
            self.leases.pop(trial.trial_id, None)
            trial.metrics = metrics_tracking.MetricsTracker()
            trial.status = Status.IDLE
            self._retry_queue.append(trial.trial_id)
            log.warning(
                "%s silent for over %.0fs: trial %s goes back to the queue",
                tuner_id,
                self.tolerance.lease_seconds,
                trial.trial_id,
            )
        # A worker that died between trials holds no lease but is still awaited: forget it too.
        idle = [
            t
            for t in self.tuner_ids
            if t not in self.ongoing_trials and self.last_seen.get(t, now) < now - self.tolerance.lease_seconds
        ]
        for tuner_id in idle:
            self.tuner_ids.discard(tuner_id)
            log.warning(
                "%s silent for over %.0fs between trials: no longer waiting for it",
                tuner_id,
                self.tolerance.lease_seconds,
            )
        if lost:
            self.save()
        return [tuner_id for tuner_id, _ in lost] + idle

    # -- reports -----------------------------------------------------------------------------------

    @locked
    def update_trial_from(self, caller: str | None, trial_id: str, metrics: dict[str, float], step: int = 0) -> Any:
        if self._refused(trial_id, caller):
            trial = self.trials[trial_id]
            return trial_module.Trial(trial.hyperparameters, trial_id=trial_id, status=Status.STOPPED)
        self._renew(trial_id)
        self._reporting = True  # an epoch's metrics: written lazily (see fmtune.tuning.persist)
        try:
            trial = super().update_trial(trial_id, metrics, step=step)
        finally:
            self._reporting = False
        if self._should_stop(trial, step):
            self.early_stopped.add(trial_id)
            log.info("trial %s stopped early at epoch %d: below the median of completed trials", trial_id, step + 1)
            return trial_module.Trial(trial.hyperparameters, trial_id=trial_id, status=Status.STOPPED)
        return trial

    @locked
    def end_trial_from(self, caller: str | None, trial: Any) -> None:
        if self._refused(trial.trial_id, caller):
            log.info("ignored the end of trial %s from %s, which no longer holds it", trial.trial_id, caller)
            return
        self.end_trial(trial)

    @locked
    def end_trial(self, trial: Any) -> None:
        entry = self.record.setdefault(trial.trial_id, {})
        entry["ended"] = time.time()
        early = trial.trial_id in self.early_stopped
        super().end_trial(trial)
        self.leases.pop(trial.trial_id, None)
        stored = self.trials[trial.trial_id]
        if early and stored.status == Status.COMPLETED:
            stored.status = Status.STOPPED
            self._save_trial(stored)
        # Keras Tuner saves before the trial leaves the ongoing set; save again so a restart
        # right after the last trial does not run it again.
        self.save()
        self._note_end(stored)
        if stored.status == Status.COMPLETED:
            self.on_completed()
        if self.persister.running:
            self._unlogged.append(stored.trial_id)
        else:
            self._log_end(stored, entry)

    @locked
    def log_ended(self, trial_id: str | None = None) -> None:
        """Log a trial that ended (or all of them), once its state is on disk: a "done" line is a
        promise that a restarted coordinator will not run the trial again."""
        for ended in [t for t in self._unlogged if trial_id in (None, t)]:
            self._unlogged.remove(ended)
            self._log_end(self.trials[ended], self.record.get(ended, {}))

    def on_completed(self) -> None:
        """A new result is in (for oracles that plan ahead)."""

    def _note_end(self, trial: Any) -> None:
        if trial.status not in FINISHED:
            self._finished.discard(trial.trial_id)
            return
        self._finished.add(trial.trial_id)
        score = trial.score if trial.status == Status.COMPLETED else None
        if score is not None and (self._best_score is None or self.objective.better_than(score, self._best_score)):
            self._best_score = score

    def _log_end(self, stored: Any, entry: dict[str, Any]) -> None:
        finished = len(self._finished)
        best_text = "n/a" if self._best_score is None else f"{self._best_score:.4f}"
        ended = entry.get("ended") or time.time()
        seconds = ended - entry.get("started", ended)
        where = f"[trial {stored.trial_id} on {entry.get('worker')}, {seconds:.0f}s]"
        progress = f"trial {finished}/{self.max_trials or '?'}"
        if stored.status == Status.COMPLETED:
            log.info("%s done: %s=%.4f (best %s) %s", progress, self.objective.name, stored.score, best_text, where)
        elif stored.status in FINISHED:
            reason = (stored.message or "").strip().splitlines()[-1:] or ["below the median"]
            log.info("%s %s: %s (best %s) %s", progress, stored.status.lower(), reason[0], best_text, where)
        else:
            log.info("trial %s failed and will be retried %s", stored.trial_id, where)

    def _check_consecutive_failures(self) -> None:
        """Keras Tuner raises inside end_trial, which fails the worker's RPC and leaves the chief
        waiting; here the search stops, with the reason, and every worker is told so."""
        streak: list[Any] = []
        for trial_id in reversed(self.end_order):  # only the latest streak matters
            trial = self.trials[trial_id]
            if trial.status != Status.FAILED:
                break
            streak.append(trial)
        if len(streak) >= self.tolerance.max_consecutive_failures and self.abort_reason is None:
            last = (streak[0].message or "").strip().splitlines()[-1:] or ["no message"]
            self.abort_reason = f"{len(streak)} trials failed in a row; the last one: {last[0]}"
            log.error("stopping the search: %s", self.abort_reason)

    # -- median stopping -----------------------------------------------------------------------------

    def _should_stop(self, trial: Any, step: int) -> bool:
        rule = self.tolerance.median_stopping
        if not rule.enabled or step < rule.start_step:
            return False
        name, maximise = self.objective.name, self.objective.direction == "max"
        averages = []
        for other in self.trials.values():
            if other.status != Status.COMPLETED or not other.metrics.exists(name):
                continue
            upto = [obs.mean() for obs in other.metrics.get_history(name) if obs.step <= step]
            if upto:
                averages.append(statistics.fmean(upto))
        if len(averages) < rule.min_trials or not trial.metrics.exists(name):
            return False
        best = trial.metrics.get_best_value(name)
        median = statistics.median(averages)
        return bool(best < median if maximise else best > median)

    # -- the calls the servicer makes that Keras Tuner leaves unlocked ------------------------------

    @locked
    def get_space(self) -> Any:
        return super().get_space()

    @locked
    def update_space(self, hyperparameters: Any) -> None:
        super().update_space(hyperparameters)

    @locked
    def get_trial(self, trial_id: str) -> Any:
        return super().get_trial(trial_id)

    @locked
    def get_best_trials(self, num_trials: int = 1) -> Any:
        return super().get_best_trials(num_trials)

    # -- state -----------------------------------------------------------------------------------------

    def save(self) -> None:
        if self.persister.running:
            self.persister.mark()
        else:
            rewrite(Path(self._get_oracle_fname()), oracle_json(self.get_state()))

    def _save_trial(self, trial: Any) -> None:
        if self.persister.running:
            self.persister.mark(trial.trial_id, lazy=self._reporting)
        else:
            rewrite(self.trial_file(trial.trial_id), trial_json(self._trial_state(trial)))

    # Paths without Keras Tuner's directory check (through TensorFlow's file API) on every call:
    # a trial's directory is made once, when its file's path is first asked for.

    def _get_oracle_fname(self) -> str:
        return os.path.join(str(self._directory), self._project_name, "oracle.json")

    def _get_trial_dir(self, trial_id: str) -> str:
        path = os.path.join(str(self._directory), self._project_name, f"trial_{trial_id}")
        os.makedirs(path, exist_ok=True)
        return path

    def trial_file(self, trial_id: str) -> Path:
        path = self._trial_files.get(trial_id)
        if path is None:
            path = self._trial_files[trial_id] = Path(self._get_trial_dir(trial_id)) / "trial.json"
        return path

    @locked
    def snapshot(self, trial_ids: set[str], with_state: bool) -> tuple[dict[str, bytes], bytes | None]:
        """The trials' files, and oracle.json if asked, as they are now, for the persister to write."""
        trials = {t: trial_json(self._trial_state(self.trials[t])) for t in trial_ids if t in self.trials}
        return trials, oracle_json(self.get_state()) if with_state else None

    def _trial_state(self, trial: Any) -> dict[str, Any]:
        """``Trial.get_state()`` with the hyperparameters' config made once per set of values (a
        trial's are only ever replaced, by a worker that added some): the config is most of the cost."""
        cached = self._hp_configs.get(trial.trial_id)
        if cached is None or cached[0] is not trial.hyperparameters:
            cached = self._hp_configs[trial.trial_id] = (trial.hyperparameters, trial.hyperparameters.get_config())
        return {
            "trial_id": trial.trial_id,
            "hyperparameters": cached[1],
            "metrics": trial.metrics.get_config(),
            "score": trial.score,
            "best_step": trial.best_step,
            "status": trial.status,
            "message": trial.message,
        }

    def get_state(self) -> dict[str, Any]:
        return {
            **super().get_state(),
            "fmtune_record": self.record,
            "fmtune_early_stopped": sorted(self.early_stopped),
            "fmtune_abort": self.abort_reason,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.record = state.get("fmtune_record", {})
        self.early_stopped = set(state.get("fmtune_early_stopped", []))
        self.abort_reason = state.get("fmtune_abort")
        self._resumed = dict(self.ongoing_trials)

    def reload(self) -> None:
        """Resume: trials in flight when the coordinator stopped keep their workers, with a fresh
        lease (Keras Tuner would queue them again); a worker that is gone too loses its trial to
        the queue when that lease runs out. Completed trials are never run again."""
        recover(Path(self._directory, self._project_name))
        super().reload()
        for trial in self.trials.values():
            self._note_end(trial)
        resumed = self._resumed
        ids = {trial.trial_id for trial in resumed.values()}
        queue: list[str] = getattr(self, "_retry_queue")  # noqa: B009 - set by Keras Tuner
        self._retry_queue = [trial_id for trial_id in queue if trial_id not in ids]
        self.ongoing_trials, self.tuner_ids = dict(resumed), set(resumed)
        for trial in resumed.values():
            trial.status = Status.RUNNING
            self._renew(trial.trial_id)
        if resumed:
            log.info(
                "resumed with %d trial(s) in flight: %s",
                len(resumed),
                ", ".join(f"{t.trial_id} on {w}" for w, t in resumed.items()),
            )


class FmtuneBayesianOracle(FmtuneOracle, kt.oracles.BayesianOptimizationOracle):
    """Keras Tuner's Bayesian optimisation with its suggestions computed ahead, off the request
    path (see ``fmtune.tuning.suggest``). A worker asking for a trial waits for a suggestion
    without holding the oracle's lock, so reports and heartbeats are answered meanwhile.
    ``beta`` is accepted and kept for Keras Tuner's state file, but the acquisition is expected
    improvement, which has no such knob."""

    create_may_wait = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.suggestions = SuggestionQueue(GPSuggester(self.alpha, self.seed), self.observations)
        self._point: np.ndarray | None = None  # the suggestion the current create_trial hands out
        self._vectors: dict[str, tuple[int, list[float]]] = {}

    def start_background(self) -> None:
        super().start_background()
        self.suggestions.start()

    def stop_background(self) -> None:
        self.suggestions.stop()
        super().stop_background()

    def on_completed(self) -> None:
        self.suggestions.changed()

    def _initial_points(self) -> int:
        return int(self.num_initial_points or max(3 * len(self.hyperparameters.space), 3))

    def _completed(self) -> list[Any]:
        return [t for t in self.trials.values() if t.status == Status.COMPLETED]

    def _wants_suggestion(self, tuner_id: str, completed: int) -> bool:
        """Racy reads, re-checked under the lock: a suggestion taken in vain is given back."""
        return (
            self.abort_reason is None
            and tuner_id not in self.ongoing_trials
            and not self._retry_queue
            and (self.max_trials is None or len(self.trials) < self.max_trials)
            and completed >= self._initial_points()
        )

    def create_trial(self, tuner_id: str) -> Any:
        completed = len(self._completed())
        if not self._wants_suggestion(tuner_id, completed):
            return super().create_trial(tuner_id)
        point = self.suggestions.take(completed, len(self.ongoing_trials), SUGGESTION_WAIT_SECONDS)
        if point is None:  # the worker asks again (Keras Tuner's IDLE)
            return trial_module.Trial(self.get_space(), status=Status.IDLE)
        return self._create_with(tuner_id, point)

    @locked
    def _create_with(self, tuner_id: str, point: np.ndarray) -> Any:
        self._point = point
        try:
            return super().create_trial(tuner_id)
        finally:
            if self._point is not None:
                self.suggestions.give_back(self._point, len(self._completed()))
            self._point = None

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if self._point is None or len(self._completed()) < self._initial_points():
            return self._random_populate_space()
        values = self._vector_to_values(self._point)
        self._point = None
        return {"status": Status.RUNNING, "values": values}

    def _vector(self, trial: Any) -> list[float]:
        """Keras Tuner's encoding: each non-fixed hyperparameter as a probability in [0, 1]."""
        space = self._nonfixed_space()
        cached = self._vectors.get(trial.trial_id)
        if cached is not None and cached[0] == len(space) and trial.status == Status.COMPLETED:
            return cached[1]
        values = trial.hyperparameters.values
        vector = [
            hp.value_to_prob(
                values[hp.name] if trial.hyperparameters.is_active(hp) and hp.name in values else hp.default
            )
            for hp in space
        ]
        self._vectors[trial.trial_id] = (len(space), vector)
        return vector

    @locked
    def observations(self) -> Observations:
        completed = self._completed()
        sign = -1.0 if self.objective.direction == "max" else 1.0
        dimensions = len(self._nonfixed_space())
        pending = [self._vector(t) for t in self.ongoing_trials.values()]
        return Observations(
            x=np.array([self._vector(t) for t in completed]).reshape(-1, dimensions),
            y=np.array([sign * t.score for t in completed], dtype=float),
            pending=np.array(pending).reshape(-1, dimensions),
            workers=len(self.tuner_ids),
            enough=len(completed) >= self._initial_points(),
        )


def make_oracle(cfg: ExperimentConfig) -> kt.Oracle:
    search, tolerance = cfg.search, cfg.fault_tolerance
    base = ORACLE_CLASSES[search.algorithm]
    cls = (
        FmtuneBayesianOracle
        if search.algorithm == "bayesian"
        else type(f"Fmtune{base.__name__}", (FmtuneOracle, base), {})
    )
    kwargs: dict[str, Any] = {
        "objective": kt.Objective(search.objective.name, search.objective.direction),
        "seed": cfg.seed,
        "tolerance": tolerance,
        "max_retries_per_trial": tolerance.max_retries_per_trial,
    }
    if search.algorithm == "hyperband":
        kwargs.update(max_epochs=search.epochs, factor=search.hyperband_factor)
    else:
        kwargs["max_trials"] = search.max_trials
    oracle = cls(**kwargs)
    oracle.max_trials = search.max_trials  # hyperband: a cap on top of its own schedule
    return oracle
