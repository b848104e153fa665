"""The chief's oracle: Keras Tuner's own, with leases, early stopping and a clean abort.

It keeps to the trial's lifecycle: create, report, end and reap. Leases (``fmtune.tuning.leases``)
take back the trial of a worker that went silent, so the search always ends; reports from a
worker that no longer holds the trial are refused (answered STOPPED), so no trial is counted
twice. Early-stopping rules (``fmtune.tuning.stopping``) see each epoch's report. Whether the
search is over is ``fmtune.tuning.control``'s answer; who ran what, and the log lines, are
``fmtune.tuning.bookkeeping``'s; the files, ``fmtune.tuning.persist``'s. All of it is part of
the oracle's saved state, so a restarted coordinator knows who held which trial.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fmtune.config import FaultTolerance
from fmtune.text import last_line
from fmtune.tuning.bookkeeping import Book, Refusals, active_values
from fmtune.tuning.checks import TunerLimits
from fmtune.tuning.control import SearchControl
from fmtune.tuning.kt_internals import MetricsTracker, Status, Trial, locked
from fmtune.tuning.leases import Leases
from fmtune.tuning.oracle_state import PersistedOracle
from fmtune.tuning.persist import Persister
from fmtune.tuning.stopping import Cohort, Curve, Decision, StoppingRule

log = logging.getLogger("fmtune")
BUDGET = "budget"  # what stopped a trial when the search's time ran out (its results count)


class FmtuneOracle(PersistedOracle):
    """Mixin for a Keras Tuner oracle (see the module docstring)."""

    create_may_wait = False  # whether create_trial can block (for a suggestion), so needs a thread

    def __init__(
        self,
        *args: Any,
        tolerance: FaultTolerance | None = None,
        stopping: StoppingRule | None = None,
        clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.tolerance = tolerance or FaultTolerance()
        self.clock = clock  # wall time, for leases and the record alike (tests move it by hand)
        self.leases = Leases(self.tolerance.lease_seconds, clock)
        self.stopping = stopping
        self.control = SearchControl(lambda: self.max_trials)
        self.book = Book(self.objective, clock, stopping.rung if stopping is not None else lambda epochs: None)
        self.persister = Persister(self)
        self.refusals = Refusals()  # calls refused, per worker and kind (held in memory)

    # -- where the search is -----------------------------------------------------------------------

    def search_over(self) -> bool:
        return self.control.over(len(self.ongoing_trials), len(self.trials), len(self.retry_queue))

    def serving_done(self) -> bool:
        """Over, and every worker that asked was told so: the coordinator may stop serving."""
        return self.control.done(len(self.ongoing_trials), len(self.trials), len(self.retry_queue), len(self.tuner_ids))

    @locked
    def abort(self, reason: str) -> None:
        """Stop the search: every worker is told so at its next call."""
        if self.control.abort(reason):
            self.save()

    def progress(self) -> tuple[int, int, float | None]:
        """Trials finished, trials running, and the best score so far."""
        return len(self.book.finished), len(self.ongoing_trials), self.book.best_score

    def start_background(self) -> None:
        self.persister.start()

    def stop_background(self) -> None:
        self.persister.stop()

    # -- handing out and taking back trials ------------------------------------------------------

    @locked
    def create_trial(self, tuner_id: str) -> Any:
        self.use_quick_copies()  # the space may have been replaced by a worker's update
        self.leases.seen(tuner_id)
        if not self.control.may_start():
            if not self.control.closed() and not self.control.stop_sent:
                log.info("no new trial for %s: one would not end an epoch before the search closes", tuner_id)
            return self._stop(tuner_id)
        held = self.ongoing_trials.get(tuner_id)
        if held is not None:
            # A worker asking again while holding a trial has restarted: it re-runs the trial from
            # scratch, so the epochs it reported before the restart no longer count.
            held.metrics = MetricsTracker()
            self.book.requeued(held.trial_id)
            log.info("%s came back: it re-runs trial %s from the start", tuner_id, held.trial_id)
        trial = super().create_trial(tuner_id)
        if trial.status == Status.STOPPED and self.ongoing_trials:
            # Nothing new to hand out, but a running trial goes back to the queue if its worker
            # dies: this worker waits to run it rather than leaving, and stops once none runs.
            self.tuner_ids.add(tuner_id)
            return Trial(self.get_space(), status=Status.IDLE)
        if trial.status == Status.STOPPED:
            return self._stop(tuner_id)
        if trial.status == Status.RUNNING:
            self.leases.renew(trial.trial_id)
            self.book.started(trial.trial_id, tuner_id, active_values(trial.hyperparameters))
        return trial

    def _stop(self, tuner_id: str) -> Any:
        self.tuner_ids.discard(tuner_id)
        self.control.stop_sent = True
        return Trial(self.get_space(), status=Status.STOPPED)

    def holder(self, trial_id: str) -> str | None:
        return next((tid for tid, t in self.ongoing_trials.items() if t.trial_id == trial_id), None)

    def _refused(self, trial_id: str, caller: str | None, kind: str = "report") -> bool:
        """A call about a trial the caller does not hold (any more) is refused, and counted. The
        caller is None only for the coordinator's own calls (the servicer asks every remote
        caller for its id, which its credential proves)."""
        if caller is not None:
            self.leases.seen(caller)
        holder = self.holder(trial_id)
        refused = holder is None or (caller is not None and caller != holder)
        if refused and caller is not None:
            whose = "no one (its lease ran out, or it ended)" if holder is None else "another worker"
            self.refusals.note(
                caller,
                "not held" if holder is None else f"{kind} for another's trial",
                f"a {kind} for trial {trial_id[:40]}, held by {whose}",
            )
        return refused

    def tuner_limits(self) -> TunerLimits:
        """What Keras Tuner's ``tuner/`` values may be here: Hyperband's epochs and brackets (its
        ``_get_num_brackets``, from its public settings); no other algorithm sets any."""
        max_epochs = getattr(self, "max_epochs", None)
        if max_epochs is None:
            return TunerLimits(None, 0, self.trials)
        brackets, epochs = 0, float(max_epochs)
        while epochs >= getattr(self, "min_epochs", 1):
            epochs /= getattr(self, "factor", 3)
            brackets += 1
        return TunerLimits(int(max_epochs), brackets, self.trials)

    def _stopped_answer(self, trial_id: str) -> Any:
        known = self.trials.get(trial_id)
        return Trial(known.hyperparameters if known else self.get_space(), trial_id=trial_id, status=Status.STOPPED)

    @locked
    def heartbeat(self, trial_id: str, caller: str | None) -> Any:
        """Renew the caller's lease; the answer's status says whether it should go on."""
        if trial_id not in self.trials or self._refused(trial_id, caller, "heartbeat"):
            return self._stopped_answer(trial_id)
        self.leases.renew(trial_id)
        return self.trials[trial_id]

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
            self.book.requeued(trial.trial_id)
            lease = self.tolerance.lease_seconds
            log.warning("%s silent for over %.0fs: trial %s goes back to the queue", tuner_id, lease, trial.trial_id)
        # A worker that died between trials holds no lease but is still awaited: forget it too.
        idle = self.leases.silent(t for t in self.tuner_ids if t not in self.ongoing_trials)
        for tuner_id in idle:
            self.tuner_ids.discard(tuner_id)
            lease = self.tolerance.lease_seconds
            log.warning("%s silent for over %.0fs between trials: no longer waiting for it", tuner_id, lease)
        if lost:
            self.save()
        return [tuner_id for tuner_id, _ in lost] + idle

    # -- reports -----------------------------------------------------------------------------------

    @locked
    def update_trial_from(self, caller: str | None, trial_id: str, metrics: dict[str, float], step: int = 0) -> Any:
        if self._refused(trial_id, caller):
            return self._stopped_answer(trial_id)
        self.leases.renew(trial_id)
        self.book.reported(trial_id)
        self._reporting = True  # an epoch's metrics: written lazily (see fmtune.tuning.persist)
        try:
            trial = super().update_trial(trial_id, metrics, step=step)
        finally:
            self._reporting = False
        if self.control.closed():
            self.book.stopped(trial_id, BUDGET, step, "by the coordinator: the search is over; its results count")
            return self._stopped_answer(trial_id)
        if self._should_stop(trial, step):
            rule = type(self.stopping).__name__
            self.book.stopped(trial_id, rule, step, f"early by {rule}")
            return self._stopped_answer(trial_id)
        return trial

    def curve(self, trial: Any) -> Curve:
        name = self.objective.name
        if not trial.metrics.exists(name):
            return {}
        return {int(obs.step): obs.mean() for obs in trial.metrics.get_history(name)}

    def _should_stop(self, trial: Any, step: int) -> bool:
        if self.stopping is None:
            return False
        others = [t for t in self.trials.values() if t.trial_id != trial.trial_id]
        cohort = Cohort(
            completed=[self.curve(t) for t in others if t.status == Status.COMPLETED],
            everyone=[self.curve(t) for t in others],
        )
        return self.stopping.on_result(self.curve(trial), step, cohort) == Decision.STOP

    @locked
    def end_trial_from(self, caller: str | None, trial: Any) -> None:
        if self._refused(trial.trial_id, caller, "end"):
            log.info("ignored the end of trial %s from %s, which does not hold it", trial.trial_id, caller)
            return
        self.end_trial(trial)

    @locked
    def end_trial(self, trial: Any) -> None:
        stopped_by = self.book.attempt(trial.trial_id).stopped_by
        super().end_trial(trial)
        self.leases.release(trial.trial_id)
        stored = self.trials[trial.trial_id]
        if stopped_by not in (None, BUDGET) and stored.status == Status.COMPLETED:
            stored.status = Status.STOPPED  # stopped early: its score is from fewer epochs
            self.save_trial(stored)
        self.book.ended(stored)
        # Keras Tuner saves before the trial leaves the ongoing set; save again so a restart
        # right after the last trial does not run it again.
        self.save()
        self.on_ended()
        self.book.unlogged.append(stored.trial_id)
        if not self.persister.running:
            self.log_ended(stored.trial_id)

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
            last = last_line(streak[0].message, "no message")
            self.abort(f"{len(streak)} trials failed in a row; the last one: {last}")

    @locked
    def log_ended(self, trial_id: str | None = None) -> None:
        """Log a trial that ended (or all of them), once its state is on disk: a "done" line is a
        promise that a restarted coordinator will not run the trial again."""
        for ended in [t for t in self.book.unlogged if trial_id in (None, t)]:
            self.book.unlogged.remove(ended)
            self.book.log_end(self.trials[ended], self.max_trials)

    def on_ended(self) -> None:
        """A trial ended, so there may be a new result (for oracles that plan ahead): one stopped
        early counts too, as under ASHA most do."""

    def best_trial_id(self) -> str | None:
        return self.book.best_trial
