"""The chief's oracle: Keras Tuner's own, plus leases, a record, median stopping and a clean abort.

Keras Tuner alone waits forever for a worker that died mid-trial. Here every running trial has a
lease that the worker's heartbeats and reports renew; a trial whose lease runs out goes back to the
queue and its worker is forgotten, so the search always ends. Reports from a worker that no longer
holds the trial are refused (answered STOPPED), so no trial is counted twice.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import TYPE_CHECKING, Any

import keras_tuner as kt
from keras_tuner.src import protos
from keras_tuner.src.engine import conditions, metrics_tracking
from keras_tuner.src.engine import trial as trial_module

from fmtune.config import ExperimentConfig, FaultTolerance
from fmtune.report import format_values

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


conditions.Parent.to_proto = _parent_to_proto


def active_values(hp: kt.HyperParameters) -> dict[str, Any]:
    """Only the values that shaped the model (inactive conditional ones are left out)."""
    return {hp_.name: hp.values[hp_.name] for hp_ in hp.space if hp.is_active(hp_) and hp_.name in hp.values} | {
        k: v for k, v in hp.values.items() if k.startswith("tuner/")
    }


class FmtuneOracle(_OracleBase):
    """Mixin for a Keras Tuner oracle (see the module docstring). Its bookkeeping is part of the
    oracle's saved state, so a restarted coordinator knows who held which trial."""

    def __init__(self, *args: Any, tolerance: FaultTolerance | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.tolerance = tolerance or FaultTolerance()
        self.record: dict[str, dict[str, Any]] = {}
        self.leases: dict[str, float] = {}  # trial_id -> monotonic deadline
        self.last_seen: dict[str, float] = {}  # tuner_id -> monotonic time of its last call
        self.early_stopped: set[str] = set()
        self.abort_reason: str | None = None
        self._resumed: dict[str, Any] = {}

    # -- handing out and taking back trials ------------------------------------------------------

    @kt.synchronized
    def create_trial(self, tuner_id: str) -> Any:
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

    @kt.synchronized
    def heartbeat(self, trial_id: str, caller: str | None) -> Any:
        """Renew the caller's lease; the answer's status says whether it should go on."""
        trial = self.trials.get(trial_id)
        if trial is None:
            return trial_module.Trial(self.get_space(), trial_id=trial_id, status=Status.STOPPED)
        if self._refused(trial_id, caller):
            return trial_module.Trial(trial.hyperparameters, trial_id=trial_id, status=Status.STOPPED)
        self._renew(trial_id)
        return trial

    @kt.synchronized
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

    @kt.synchronized
    def update_trial_from(self, caller: str | None, trial_id: str, metrics: dict[str, float], step: int = 0) -> Any:
        if self._refused(trial_id, caller):
            trial = self.trials[trial_id]
            return trial_module.Trial(trial.hyperparameters, trial_id=trial_id, status=Status.STOPPED)
        self._renew(trial_id)
        trial = super().update_trial(trial_id, metrics, step=step)
        if self._should_stop(trial, step):
            self.early_stopped.add(trial_id)
            log.info("trial %s stopped early at epoch %d: below the median of completed trials", trial_id, step + 1)
            return trial_module.Trial(trial.hyperparameters, trial_id=trial_id, status=Status.STOPPED)
        return trial

    @kt.synchronized
    def end_trial_from(self, caller: str | None, trial: Any) -> None:
        if self._refused(trial.trial_id, caller):
            log.info("ignored the end of trial %s from %s, which no longer holds it", trial.trial_id, caller)
            return
        self.end_trial(trial)

    @kt.synchronized
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
        self._log_end(stored, entry)

    def _log_end(self, stored: Any, entry: dict[str, Any]) -> None:
        finished = sum(t.status in FINISHED for t in self.trials.values())
        best = self.get_best_trials(1)
        best_text = f"{best[0].score:.4f}" if best and best[0].score is not None else "n/a"
        seconds = entry["ended"] - entry.get("started", entry["ended"])
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
        for trial_id in self.end_order:
            trial = self.trials[trial_id]
            streak = [*streak, trial] if trial.status == Status.FAILED else []
        if len(streak) >= self.tolerance.max_consecutive_failures and self.abort_reason is None:
            last = (streak[-1].message or "").strip().splitlines()[-1:] or ["no message"]
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

    # -- state -----------------------------------------------------------------------------------------

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
        super().reload()
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


def make_oracle(cfg: ExperimentConfig) -> kt.Oracle:
    search, tolerance = cfg.search, cfg.fault_tolerance
    base = ORACLE_CLASSES[search.algorithm]
    cls = type(f"Fmtune{base.__name__}", (FmtuneOracle, base), {})
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
