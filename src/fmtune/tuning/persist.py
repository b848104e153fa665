"""The oracle's state on disk, written behind the request path.

Keras Tuner rewrites oracle.json and a trial's file on every call, through TensorFlow's file API:
that, not the search, is what limits a vanilla chief (reports/capacity.md). Here a call only marks
what changed; one thread writes the changes, coalesced, at most every ``interval`` seconds. The
snapshot is taken under the oracle's lock, so trial files and oracle.json on disk always agree;
calls that must not be lost (a trial handed out, a trial's end) wait for the write that holds
them, sharing it with the other calls.

An epoch's metrics nobody waits for: they are written at once when there is nothing else to
write, but while creates and ends are waiting, at most every ``LAZY_SECONDS``, so that a write
never holds every running trial's file while creates and ends wait behind it. So only a
coordinator that dies under such load can lose up to that second of a running trial's epochs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent import futures
from typing import Any

import orjson

from fmtune import jsonio
from fmtune.files import replace

log = logging.getLogger("fmtune")


LAZY_SECONDS = 1.0
ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def oracle_json(state: dict[str, Any]) -> bytes:
    """oracle.json's bytes. It grows with every trial and is rewritten many times a second under
    the oracle's lock, so it is encoded by orjson (several times faster than json)."""
    return orjson.dumps(state, option=ORJSON_OPTIONS)


def trial_json(state: dict[str, Any]) -> bytes:
    """A trial file's bytes, encoded under the oracle's lock: orjson is much faster than json
    but writes NaN as null, which Keras Tuner would read back as a missing value, so a trial with
    a non-finite metric (a diverged one) is written by json, as NaN, like Keras Tuner's own files."""
    values = [state.get("score")]
    for history in state["metrics"]["metrics"].values():
        for observation in history["observations"]:
            values.extend(observation["value"])
    finite = all(value is None or math.isfinite(value) for value in values)
    return jsonio.dumps(state, finite=finite, option=ORJSON_OPTIONS)


class Persister:
    """Coalesced, ordered writes of an oracle's files (see the module docstring)."""

    def __init__(self, oracle: Any, interval: float = 0.01):
        self.oracle, self.interval = oracle, interval
        self._dirty_trials: set[str] = set()
        self._lazy_trials: set[str] = set()  # trials whose only change is a report
        self._lazy_at = 0.0  # monotonic time of the last write of the lazy ones
        self._dirty_oracle = False
        self._marked = 0  # changes marked so far
        self._written = 0  # changes on disk
        # A change wakes only the writer; a write completes only the futures it covers, so a
        # report does not wake every create and end waiting for the disk.
        self._changed = threading.Condition()
        self._waiting: list[tuple[int, futures.Future[None]]] = []  # (changes it needs, future)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def mark(self, trial_id: str | None = None, lazy: bool = False) -> None:
        """Note a change: a trial's, or the oracle's own. A lazy one nobody waits for (see above)."""
        with self._changed:
            if trial_id is None:
                self._dirty_oracle = True
            elif lazy:
                self._lazy_trials.add(trial_id)
            else:
                self._dirty_trials.add(trial_id)
            if not lazy:
                self._marked += 1
            self._changed.notify()

    def written(self) -> futures.Future[None]:
        """A future done once every change marked so far is on disk (at once if no writer runs)."""
        future: futures.Future[None] = futures.Future()
        with self._changed:
            if self._written >= self._marked or self._thread is None:
                future.set_result(None)
            else:
                self._waiting.append((self._marked, future))
        return future

    def _complete(self, upto: int | None) -> None:
        """Changes up to ``upto`` are on disk: complete the futures waiting for them (None: all)."""
        with self._changed:
            if upto is not None:
                self._written = max(self._written, upto)
            done = [f for ticket, f in self._waiting if upto is None or ticket <= self._written]
            self._waiting = [(t, f) for t, f in self._waiting if upto is not None and t > self._written]
        for future in done:
            future.set_result(None)

    def flush(self, everything: bool = True) -> None:
        """Write what was marked so far, now: everything, or lazy changes only when due (above)."""
        with self._changed:
            trial_ids, write_oracle, upto = self._dirty_trials, self._dirty_oracle, self._marked
            self._dirty_trials, self._dirty_oracle = set(), False
            idle = not trial_ids and not write_oracle
            if everything or idle or time.monotonic() - self._lazy_at >= LAZY_SECONDS:
                trial_ids, self._lazy_trials, self._lazy_at = trial_ids | self._lazy_trials, set(), time.monotonic()
        if not trial_ids and not write_oracle:
            return
        oracle = self.oracle
        trials, state = oracle.snapshot(trial_ids, write_oracle)  # consistent: taken under the oracle's lock
        for trial_id, text in trials.items():
            replace(oracle.trial_file(trial_id), text, unlink_first=True)
        if state is not None:  # last: it never names a trial whose file is not yet written
            replace(oracle.state_file, state, unlink_first=True)
        self._complete(upto)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                self._changed.wait_for(
                    lambda: self._marked > self._written or bool(self._lazy_trials) or self._stop.is_set()
                )
            try:
                self.flush(everything=False)
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
        try:
            self.flush()
        finally:
            self._complete(None)
