"""The chief's oracle: Keras Tuner's own, with leases, a record of who ran what, early stopping
and a clean abort tied into its bookkeeping.

Leases (``fmtune.tuning.leases``) take back the trial of a worker that went silent, so the search
always ends; reports from a worker that no longer holds the trial are refused (answered STOPPED),
so no trial is counted twice. Early-stopping rules (``fmtune.tuning.stopping``) see each epoch's
report. All of it is part of the oracle's saved state, so a restarted coordinator knows who held
which trial.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras_tuner as kt

from fmtune.config import FaultTolerance
from fmtune.files import recover, replace
from fmtune.run.budget import Budget, typical_epoch
from fmtune.text import format_values
from fmtune.tuning.kt_internals import FINISHED, MetricsTracker, OracleHooks, Status, Trial, locked
from fmtune.tuning.leases import Leases
from fmtune.tuning.persist import Persister, oracle_json, trial_json
from fmtune.tuning.stopping import Cohort, Curve, Decision, StoppingRule

log = logging.getLogger("fmtune")


def active_values(hp: kt.HyperParameters) -> dict[str, Any]:
    """Only the values that shaped the model (inactive conditional ones are left out)."""
    return {hp_.name: hp.values[hp_.name] for hp_ in hp.space if hp.is_active(hp_) and hp_.name in hp.values} | {
        k: v for k, v in hp.values.items() if k.startswith("tuner/")
    }


class FmtuneOracle(OracleHooks):
    """Mixin for a Keras Tuner oracle (see the module docstring)."""

    create_may_wait = False  # whether create_trial can block (for a suggestion), so needs a thread

    def __init__(
        self,
        *args: Any,
        tolerance: FaultTolerance | None = None,
        stopping: StoppingRule | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.tolerance = tolerance or FaultTolerance()
        self.leases = Leases(self.tolerance.lease_seconds)
        self.stopping = stopping
        self.budget: Budget | None = None  # set by the coordinator when the experiment has one
        self.epoch_scale = 1.0  # a retraining epoch's images over a trial epoch's
        self.clock: Callable[[], float] = time.time  # wall clock of the record (tests move it by hand)
        self.started_at = self.clock()  # the experiment's first start, kept across restarts
        self.record: dict[str, dict[str, Any]] = {}  # trial id -> worker, start and end times, epochs' seconds
        self.early_stopped: set[str] = set()
        self.abort_reason: str | None = None
        self.stop_sent = False  # a worker was told the search is over
        self.persister = Persister(self)
        self._resumed: dict[str, Any] = {}
        self._unlogged: list[str] = []  # ended trials whose line waits for their state to be on disk
        self._trial_files: dict[str, Path] = {}
        self._hp_configs: dict[str, tuple[Any, dict[str, Any]]] = {}  # trial id -> (values, their config)
        self._best_score: float | None = None  # kept as trials end, rather than sorting them all
        self._best_trial: str | None = None
        self._finished: set[str] = set()  # likewise: trials with a final status
        self._reporting = False

    # -- where the search is -----------------------------------------------------------------------

    def search_over(self) -> bool:
        """No trial is running and none will be handed out: the search aborted, or it reached its
        end (``max_trials``, or the algorithm's own) with nothing waiting to be retried, or a worker
        was told it is over (a trial taken back from a dead worker after that is not run again:
        the workers it would go to have left)."""
        if self.ongoing_trials:
            return False
        if self.abort_reason is not None or self.stop_sent:
            return True
        return self.max_trials is not None and len(self.trials) >= self.max_trials and not self.retry_queue

    @locked
    def abort(self, reason: str) -> None:
        """Stop the search: every worker is told so at its next call."""
        if self.abort_reason is None:
            self.abort_reason = reason
            log.error("stopping the search: %s", reason)
            self.save()

    def progress(self) -> tuple[int, int, float | None]:
        """Trials finished, trials running, and the best score so far."""
        return len(self._finished), len(self.ongoing_trials), self._best_score

    # -- threads that work behind the RPCs -------------------------------------------------------

    def start_background(self) -> None:
        self.persister.start()

    def stop_background(self) -> None:
        self.persister.stop()

    # -- handing out and taking back trials ------------------------------------------------------

    @locked
    def create_trial(self, tuner_id: str) -> Any:
        self.use_quick_copies()  # the space may have been replaced by a worker's update
        self.leases.seen(tuner_id)
        if self.abort_reason is not None or not self._search_open():
            self.tuner_ids.discard(tuner_id)
            self.stop_sent = True
            return Trial(self.get_space(), status=Status.STOPPED)
        held = self.ongoing_trials.get(tuner_id)
        if held is not None:
            # A worker asking again while holding a trial has restarted: it re-runs the trial from
            # scratch, so the epochs it reported before the restart no longer count.
            held.metrics = MetricsTracker()
            log.info("%s came back: it re-runs trial %s from the start", tuner_id, held.trial_id)
        trial = super().create_trial(tuner_id)
        if trial.status == Status.STOPPED:
            if self.ongoing_trials:
                # Nothing new to hand out, but a running trial goes back to the queue if its worker
                # dies: this worker waits to run it rather than leaving, and stops once none runs.
                self.tuner_ids.add(tuner_id)
                return Trial(self.get_space(), status=Status.IDLE)
            self.stop_sent = True
        elif trial.status == Status.RUNNING:
            self.record.setdefault(trial.trial_id, {}).update(
                worker=tuner_id, started=self.clock(), ended=None, epochs=[], reported=None
            )
            self.leases.renew(trial.trial_id)
            values = format_values(active_values(trial.hyperparameters))
            log.info("trial %s started on %s: %s", trial.trial_id, tuner_id, values)
        return trial

    def holder(self, trial_id: str) -> str | None:
        return next((tid for tid, t in self.ongoing_trials.items() if t.trial_id == trial_id), None)

    def _refused(self, trial_id: str, caller: str | None) -> bool:
        """A report about a trial the caller does not hold (any more) is refused."""
        if caller is not None:
            self.leases.seen(caller)
        holder = self.holder(trial_id)
        return holder is None or (caller is not None and caller != holder)

    @locked
    def heartbeat(self, trial_id: str, caller: str | None) -> Any:
        """Renew the caller's lease; the answer's status says whether it should go on."""
        trial = self.trials.get(trial_id)
        if trial is None:
            return Trial(self.get_space(), trial_id=trial_id, status=Status.STOPPED)
        if self._refused(trial_id, caller):
            return Trial(trial.hyperparameters, trial_id=trial_id, status=Status.STOPPED)
        self.leases.renew(trial_id)
        return trial

    @locked
    def reap(self) -> list[str]:
        """Give the trials of silent workers back to the queue; forget those workers."""
        expired = set(self.leases.expired(t.trial_id for t in self.ongoing_trials.values()))
        lost = [(tid, t) for tid, t in self.ongoing_trials.items() if t.trial_id in expired]
        for tuner_id, trial in lost:
            del self.ongoing_trials[tuner_id]
            self.tuner_ids.discard(tuner_id)
            self.leases.release(trial.trial_id)
            trial.metrics = MetricsTracker()
            trial.status = Status.IDLE
            self.retry_queue.append(trial.trial_id)
            log.warning(
                "%s silent for over %.0fs: trial %s goes back to the queue",
                tuner_id,
                self.tolerance.lease_seconds,
                trial.trial_id,
            )
        # A worker that died between trials holds no lease but is still awaited: forget it too.
        idle = self.leases.silent(t for t in self.tuner_ids if t not in self.ongoing_trials)
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
            known = self.trials.get(trial_id)
            space = known.hyperparameters if known is not None else self.get_space()
            return Trial(space, trial_id=trial_id, status=Status.STOPPED)
        self.leases.renew(trial_id)
        self._time_epoch(trial_id)
        self._reporting = True  # an epoch's metrics: written lazily (see fmtune.tuning.persist)
        try:
            trial = super().update_trial(trial_id, metrics, step=step)
        finally:
            self._reporting = False
        if not self._search_open():
            self.record[trial_id]["stopped_by"] = "budget"
            log.info("trial %s stopped at epoch %d: the search's time is up; its results count", trial_id, step + 1)
            return Trial(trial.hyperparameters, trial_id=trial_id, status=Status.STOPPED)
        if self._should_stop(trial, step):
            self.early_stopped.add(trial_id)
            self.record[trial_id]["stopped_by"] = type(self.stopping).__name__
            log.info("trial %s stopped early at epoch %d by %s", trial_id, step + 1, type(self.stopping).__name__)
            return Trial(trial.hyperparameters, trial_id=trial_id, status=Status.STOPPED)
        return trial

    def _time_epoch(self, trial_id: str) -> None:
        """Note how long the epoch just reported took (since the trial's start or its last report)."""
        entry = self.record.setdefault(trial_id, {})
        now = self.clock()
        entry.setdefault("epochs", []).append(round(now - (entry.get("reported") or entry.get("started", now)), 3))
        entry["reported"] = now

    def retrain_epoch_estimate(self) -> float | None:
        """What an epoch of retraining will cost: a trial epoch of the best trial so far (of any
        trial, before the best has one), scaled to the retraining set. A trial's first epoch is
        left out: it also builds and traces the model, which costs more than the epoch itself."""

        def later_epochs(trial_id: str) -> list[float]:
            return list(self.record.get(trial_id, {}).get("epochs", [])[1:])

        best = self.best_trial_id()
        timed = later_epochs(best) if best is not None else []
        typical = typical_epoch(timed or [s for trial_id in self.record for s in later_epochs(trial_id)])
        return None if typical is None else typical * self.epoch_scale

    def _search_open(self) -> bool:
        return self.budget is None or self.budget.search_open(self.retrain_epoch_estimate())

    def _curve(self, trial: Any) -> Curve:
        name = self.objective.name
        if not trial.metrics.exists(name):
            return {}
        return {int(obs.step): obs.mean() for obs in trial.metrics.get_history(name)}

    def _should_stop(self, trial: Any, step: int) -> bool:
        if self.stopping is None:
            return False
        others = [t for t in self.trials.values() if t.trial_id != trial.trial_id]
        cohort = Cohort(
            completed=[self._curve(t) for t in others if t.status == Status.COMPLETED],
            everyone=[self._curve(t) for t in others],
        )
        return self.stopping.on_result(self._curve(trial), step, cohort) == Decision.STOP

    @locked
    def end_trial_from(self, caller: str | None, trial: Any) -> None:
        if self._refused(trial.trial_id, caller):
            log.info("ignored the end of trial %s from %s, which no longer holds it", trial.trial_id, caller)
            return
        self.end_trial(trial)

    @locked
    def end_trial(self, trial: Any) -> None:
        entry = self.record.setdefault(trial.trial_id, {})
        entry["ended"] = self.clock()
        early = trial.trial_id in self.early_stopped
        super().end_trial(trial)
        self.leases.release(trial.trial_id)
        stored = self.trials[trial.trial_id]
        if early and stored.status == Status.COMPLETED:
            stored.status = Status.STOPPED
            self.save_trial(stored)
        # Keras Tuner saves before the trial leaves the ongoing set; save again so a restart
        # right after the last trial does not run it again.
        self.save()
        self._note_end(stored)
        self.on_ended()
        if self.persister.running:
            self._unlogged.append(stored.trial_id)
        else:
            self._log_end(stored, entry)

    def check_failures(self) -> None:
        """Keras Tuner raises here, which fails the worker's call and leaves the chief waiting;
        fmtune stops the search, with the reason, and every worker is told so."""
        streak: list[Any] = []
        for trial_id in reversed(self.end_order):  # only the latest streak matters
            trial = self.trials[trial_id]
            if trial.status != Status.FAILED:
                break
            streak.append(trial)
        if len(streak) >= self.tolerance.max_consecutive_failures:
            last = (streak[0].message or "").strip().splitlines()[-1:] or ["no message"]
            self.abort(f"{len(streak)} trials failed in a row; the last one: {last[0]}")

    @locked
    def log_ended(self, trial_id: str | None = None) -> None:
        """Log a trial that ended (or all of them), once its state is on disk: a "done" line is a
        promise that a restarted coordinator will not run the trial again."""
        for ended in [t for t in self._unlogged if trial_id in (None, t)]:
            self._unlogged.remove(ended)
            self._log_end(self.trials[ended], self.record.get(ended, {}))

    def on_ended(self) -> None:
        """A trial ended, so there may be a new result (for oracles that plan ahead): one stopped
        early counts too, as under ASHA most do."""

    def _note_end(self, trial: Any) -> None:
        if trial.status not in FINISHED:
            self._finished.discard(trial.trial_id)
            return
        self._finished.add(trial.trial_id)
        score = trial.score if trial.status == Status.COMPLETED else None
        if score is not None and (self._best_score is None or self.objective.better_than(score, self._best_score)):
            self._best_score, self._best_trial = score, trial.trial_id

    def best_trial_id(self) -> str | None:
        return self._best_trial

    def _log_end(self, stored: Any, entry: dict[str, Any]) -> None:
        best_text = "n/a" if self._best_score is None else f"{self._best_score:.4f}"
        ended = entry.get("ended") or self.clock()
        seconds = ended - entry.get("started", ended)
        where = f"[trial {stored.trial_id} on {entry.get('worker')}, {seconds:.0f}s]"
        progress = f"trial {len(self._finished)}/{self.max_trials or '?'}"
        if stored.status == Status.COMPLETED:
            log.info("%s done: %s=%.4f (best %s) %s", progress, self.objective.name, stored.score, best_text, where)
        elif stored.status in FINISHED:
            reason = (stored.message or "").strip().splitlines()[-1:] or ["stopped early"]
            log.info("%s %s: %s (best %s) %s", progress, stored.status.lower(), reason[0], best_text, where)
        else:
            log.info("trial %s failed and will be retried %s", stored.trial_id, where)

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
            replace(self.state_file, oracle_json(self.get_state()), unlink_first=True)

    def save_trial(self, trial: Any) -> None:
        if self.persister.running:
            self.persister.mark(trial.trial_id, lazy=self._reporting)
        else:
            replace(self.trial_file(trial.trial_id), trial_json(self._trial_state(trial)), unlink_first=True)

    def trial_file(self, trial_id: str) -> Path:
        path = self._trial_files.get(trial_id)
        if path is None:
            path = self._trial_files[trial_id] = self.trial_dir(trial_id) / "trial.json"
        return path

    @locked
    def snapshot(self, trial_ids: set[str], with_state: bool) -> tuple[dict[str, bytes], bytes | None]:
        """The trials' files, and oracle.json if asked, as they are now, for the persister to write."""
        trials = {t: trial_json(self._trial_state(self.trials[t])) for t in trial_ids if t in self.trials}
        return trials, oracle_json(self.get_state()) if with_state else None

    def _trial_state(self, trial: Any) -> dict[str, Any]:
        """``Trial.get_state()`` with the hyperparameters' config, most of its cost, made once per
        set of values (a trial's are only ever replaced, by a worker that added some)."""
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
            "fmtune_started_at": self.started_at,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.record = state.get("fmtune_record", {})
        self.early_stopped = set(state.get("fmtune_early_stopped", []))
        self.abort_reason = state.get("fmtune_abort")
        self.started_at = state.get("fmtune_started_at", self.started_at)
        self._resumed = dict(self.ongoing_trials)

    def reload(self) -> None:
        """Resume: trials in flight when the coordinator stopped keep their workers, with a fresh
        lease (Keras Tuner would queue them again); a worker that is gone too loses its trial to
        the queue when that lease runs out. Completed trials are never run again."""
        recover(self.state_dir)
        super().reload()
        for trial in self.trials.values():
            self._note_end(trial)
        resumed = self._resumed
        ids = {trial.trial_id for trial in resumed.values()}
        self.retry_queue = [trial_id for trial_id in self.retry_queue if trial_id not in ids]
        self.ongoing_trials, self.tuner_ids = dict(resumed), set(resumed)
        for trial in resumed.values():
            trial.status = Status.RUNNING
            self.leases.renew(trial.trial_id)
        if resumed:
            log.info(
                "resumed with %d trial(s) in flight: %s",
                len(resumed),
                ", ".join(f"{t.trial_id} on {w}" for w, t in resumed.items()),
            )

    # -- read-only views, for the run state (fmtune.run.state_writer); nothing here changes ---------

    @locked
    def live_view(self, trial_ids: set[str], since_start: int, since_end: int, everything: bool) -> dict[str, Any]:
        """What changed since the last view, copied under the lock: the trials among ``trial_ids``,
        those started after ``start_order[since_start]`` or ended after ``end_order[since_end]``,
        those running or queued (every trial if ``everything``), and who holds what. Trials that
        ended stay as they are, so a caller keeps them and the cost follows the changes, not the
        size of the search."""
        queued = list(self.retry_queue)
        holders = {trial.trial_id: tuner_id for tuner_id, trial in self.ongoing_trials.items()}
        wanted = set(self.trials) if everything else set(trial_ids)
        wanted.update(self.start_order[since_start:], self.end_order[since_end:], holders, queued)
        trials = {}
        for trial_id in wanted:
            trial = self.trials.get(trial_id)
            if trial is None:
                continue
            curves = {
                name: [(int(obs.step), obs.mean()) for obs in history.get_history()]
                for name, history in trial.metrics.metrics.items()
            }
            trials[trial_id] = {
                "status": trial.status,
                "score": trial.score,
                "best_step": trial.best_step,
                "message": trial.message,
                "hyperparameters": active_values(trial.hyperparameters),
                "curves": curves,
                "record": dict(self.record.get(trial_id, {})),
                "deadline": self.leases.deadline(trial_id),
            }
        return {
            "trials": trials,
            "holders": holders,
            "queued": queued,
            "tuner_ids": set(self.tuner_ids),
            "last_calls": self.leases.last_calls(),
            "clock": self.leases.clock(),
            "start_order": len(self.start_order),
            "end_order": list(self.end_order[since_end:]),
            "progress": self.progress(),
            "abort_reason": self.abort_reason,
        }
