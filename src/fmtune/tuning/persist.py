"""The oracle's state on disk, written behind the request path.

Keras Tuner rewrites oracle.json and a trial's file on every call, through TensorFlow's file API
(~2 ms a write, ~40 ms of writing per trial at 600 trials): that, not the search, is what limits a
vanilla chief. Here a call only marks what changed; one thread writes the changes, coalesced, at
most every ``interval`` seconds. The snapshot is taken under the oracle's lock, so trial files and
oracle.json on disk always agree with each other; calls that must not be lost (a trial handed
out, a trial's end) wait for the write that holds them, sharing it with the other calls.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("fmtune")


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Persister:
    """Coalesced, ordered writes of an oracle's files (see the module docstring)."""

    def __init__(self, oracle: Any, interval: float = 0.01):
        self.oracle, self.interval = oracle, interval
        self._dirty_trials: set[str] = set()
        self._dirty_oracle = False
        self._marked = 0  # changes marked so far
        self._written = 0  # changes on disk
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def mark(self, trial_id: str | None = None) -> None:
        """Note a change: a trial's, or the oracle's own."""
        with self._changed:
            if trial_id is None:
                self._dirty_oracle = True
            else:
                self._dirty_trials.add(trial_id)
            self._marked += 1
            self._changed.notify_all()

    def sync(self, timeout: float = 10.0) -> bool:
        """Block (without the oracle's lock) until every change marked so far is on disk."""
        with self._changed:
            ticket = self._marked
            return self._changed.wait_for(lambda: self._written >= ticket or self._thread is None, timeout)

    def flush(self) -> None:
        """Write everything marked so far, now."""
        with self._changed:
            trial_ids, write_oracle, upto = self._dirty_trials, self._dirty_oracle, self._marked
            self._dirty_trials, self._dirty_oracle = set(), False
        if not trial_ids and not write_oracle:
            return
        oracle = self.oracle
        trials, state = oracle.snapshot(trial_ids, write_oracle)  # consistent: taken under the oracle's lock
        for trial_id, text in trials.items():
            write_atomic(Path(oracle._get_trial_dir(trial_id)) / "trial.json", text)
        if state is not None:  # last: it never names a trial whose file is not yet written
            write_atomic(Path(oracle._get_oracle_fname()), state)
        with self._changed:
            self._written = max(self._written, upto)
            self._changed.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                self._changed.wait_for(lambda: self._marked > self._written or self._stop.is_set())
            try:
                self.flush()
            except Exception:  # a full disk must not kill the search; the next change retries
                log.exception("could not write the oracle's state")
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="oracle-persister", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        self.flush()
