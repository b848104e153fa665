"""The oracle's state on disk: its files, written through the ``Persister`` once one runs, and
fmtune's own record (``fmtune.tuning.bookkeeping``) and abort reason kept in oracle.json beside
Keras Tuner's state, so that a restarted coordinator resumes where the last one stopped. An abort
ends that start only: the next one (a restarted pod, an upgrade) tries again. What a restart
reloads is checked against that record first (``fmtune.tuning.reload_check``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fmtune.files import recover, replace
from fmtune.tuning.bookkeeping import Book
from fmtune.tuning.control import SearchControl
from fmtune.tuning.kt_internals import OracleHooks, Status, locked
from fmtune.tuning.leases import Leases
from fmtune.tuning.persist import Persister, oracle_json, trial_json
from fmtune.tuning.reload_check import SCORES, Record, recorded_scores, refuse_untrusted

log = logging.getLogger("fmtune")


class PersistedOracle(OracleHooks):
    """Mixin for the oracle (see the module docstring)."""

    persister: Persister
    book: Book
    control: SearchControl
    leases: Leases
    _reporting = False  # set while an epoch's report is taken: its write is lazy (fmtune.tuning.persist)
    _resumed: dict[str, Any] = {}  # noqa: RUF012 - replaced, never changed in place
    _reloaded: dict[str, Any] = {}  # noqa: RUF012 - oracle.json as the last reload read it

    def save(self) -> None:
        if self.persister.running:
            self.persister.mark()
        else:
            replace(self.state_file, oracle_json(self.get_state()), unlink_first=True)

    def save_trial(self, trial: Any) -> None:
        if self.persister.running:
            self.persister.mark(trial.trial_id, lazy=self._reporting)
        else:
            replace(self.trial_file(trial.trial_id), trial_json(self.trial_state(trial)), unlink_first=True)

    def trial_file(self, trial_id: str) -> Path:
        files: dict[str, Path] = self.__dict__.setdefault("_trial_files", {})
        path = files.get(trial_id)
        if path is None:
            path = files[trial_id] = self.trial_dir(trial_id) / "trial.json"
        return path

    @locked
    def snapshot(self, trial_ids: set[str], with_state: bool) -> tuple[dict[str, bytes], bytes | None]:
        """The trials' files, and oracle.json if asked, as they are now, for the persister to write."""
        trials = {t: trial_json(self.trial_state(self.trials[t])) for t in trial_ids if t in self.trials}
        return trials, oracle_json(self.get_state()) if with_state else None

    def trial_state(self, trial: Any) -> dict[str, Any]:
        """``Trial.get_state()`` with the hyperparameters' config, most of its cost, made once per
        set of values (a trial's are only ever replaced, by a worker that added some)."""
        configs: dict[str, tuple[Any, dict[str, Any]]] = self.__dict__.setdefault("_hp_configs", {})
        cached = configs.get(trial.trial_id)
        if cached is None or cached[0] is not trial.hyperparameters:
            cached = configs[trial.trial_id] = (trial.hyperparameters, trial.hyperparameters.get_config())
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
        own = {
            "fmtune_record": self.book.get_state(),
            "fmtune_abort": self.control.abort_reason,
            SCORES: recorded_scores(self.trials, self.end_order),
        }
        return {**super().get_state(), **own}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.book.set_state(state.get("fmtune_record", {}))
        self.control.abort_reason = state.get("fmtune_abort")
        self._resumed = dict(self.ongoing_trials)
        self._reloaded = state

    def reload(self) -> None:
        """Resume: trials in flight when the coordinator stopped keep their workers, with a fresh
        lease (Keras Tuner would queue them again); a worker that is gone too loses its trial to
        the queue when that lease runs out. Completed trials are never run again."""
        recover(self.state_dir)
        declared = list(self.hyperparameters.space)
        super().reload()
        record = Record.of(self, self._reloaded, declared)
        for trial_id in refuse_untrusted(self.trials, record, self.state_dir):
            self.retry_queue = [t for t in self.retry_queue if t != trial_id]
            self._resumed = {w: t for w, t in self._resumed.items() if t.trial_id != trial_id}
        if self.control.abort_reason is not None:
            # Its cause may be gone (workers that were Pending now run, resources were fixed): the
            # search goes on, and stops again if the cause is still there.
            log.warning("the last start stopped the search (%s); this start tries again", self.control.abort_reason)
            self.control.abort_reason = None
        for trial in self.trials.values():
            self.book.note(trial)
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
