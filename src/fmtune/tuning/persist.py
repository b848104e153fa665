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

A write that fails (a full disk) loses nothing: what it held stays marked, and is written again
with backoff until a write succeeds. A waiter is released only by a write that holds its change;
one that waited ``patience`` seconds while writes fail gets ``NotWritten`` instead, so the worker
hears "try again" (UNAVAILABLE) rather than "your result is safe". ``health`` says how writes go,
for state.json.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import orjson

from fmtune import jsonio
from fmtune.files import replace

log = logging.getLogger("fmtune")


LAZY_SECONDS = 1.0
PATIENCE_SECONDS = 10.0  # how long a waiter waits for its change while writes fail
BACKOFF_SECONDS = (0.05, 2.0)  # the first retry of a failed write, and the longest wait between
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


class NotWritten(RuntimeError):
    """The oracle's state could not be written in time: the change waited for is not on disk (yet)."""


@dataclass(frozen=True)
class WriteHealth:
    """How the writes of the oracle's state go: failed writes so far, and while they fail, why."""

    failures: int = 0
    error: str | None = None  # the last failure's, while writes fail (None once one succeeds)


class Persister:
    """Coalesced, ordered writes of an oracle's files (see the module docstring)."""

    def __init__(self, oracle: Any, interval: float = 0.01, patience: float = PATIENCE_SECONDS):
        self.oracle, self.interval, self.patience = oracle, interval, patience
        self._dirty_trials: set[str] = set()
        self._lazy_trials: set[str] = set()  # trials whose only change is a report
        self._lazy_at = 0.0  # monotonic time of the last write of the lazy ones
        self._dirty_oracle = False
        self._marked = 0  # changes marked so far
        self._written = 0  # changes on disk
        # A change wakes only the writer; a write completes only the futures it covers, so a
        # report does not wake every create and end waiting for the disk.
        self._changed = threading.Condition()
        self._waiting: list[tuple[int, float, futures.Future[None]]] = []  # (changes it needs, since, future)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._error: str | None = None  # set while writes fail
        self._backoff = 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def health(self) -> WriteHealth:
        return WriteHealth(self._failures, self._error)

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
        """A future done once every change marked so far is on disk (at once if no writer runs),
        or failed with ``NotWritten`` when writes kept failing for ``patience`` seconds."""
        future: futures.Future[None] = futures.Future()
        with self._changed:
            if self._written >= self._marked or self._thread is None:
                future.set_result(None)
            else:
                self._waiting.append((self._marked, time.monotonic(), future))
        return future

    def _complete(self, upto: int) -> None:
        """Changes up to ``upto`` are on disk: complete the futures waiting for them."""
        with self._changed:
            self._written = max(self._written, upto)
            done = [f for ticket, _, f in self._waiting if ticket <= self._written]
            self._waiting = [w for w in self._waiting if w[0] > self._written]
        for future in done:
            with contextlib.suppress(futures.InvalidStateError):  # cancelled: its caller went away
                future.set_result(None)

    def _give_up(self, older_than: float) -> None:
        """Fail the waiters that have waited longer than ``older_than`` seconds (all: 0)."""
        now = time.monotonic()
        with self._changed:
            expired = [f for _, since, f in self._waiting if now - since >= older_than]
            self._waiting = [w for w in self._waiting if now - w[1] < older_than]
            reason = self._error
        for future in expired:
            with contextlib.suppress(futures.InvalidStateError):
                future.set_exception(NotWritten(f"the coordinator cannot write its state: {reason}"))

    def flush(self, everything: bool = True) -> None:
        """Write what was marked so far, now: everything, or lazy changes only when due (above).
        Raises OSError when the write fails, with every change it held still marked."""
        with self._changed:
            trial_ids, write_oracle, upto = self._dirty_trials, self._dirty_oracle, self._marked
            lazy: set[str] = set()
            self._dirty_trials, self._dirty_oracle = set(), False
            idle = not trial_ids and not write_oracle
            if everything or idle or time.monotonic() - self._lazy_at >= LAZY_SECONDS:
                lazy, self._lazy_trials, self._lazy_at = self._lazy_trials - trial_ids, set(), time.monotonic()
        if not trial_ids and not write_oracle and not lazy:
            return
        try:
            self._write(trial_ids | lazy, write_oracle)
        except BaseException as exc:
            with self._changed:  # not on disk: still to write
                self._dirty_trials |= trial_ids
                self._lazy_trials |= lazy
                self._dirty_oracle |= write_oracle
            self._failed(exc)
            raise
        self._recovered()
        self._complete(upto)

    def _write(self, trial_ids: set[str], write_oracle: bool) -> None:
        oracle = self.oracle
        trials, state = oracle.snapshot(trial_ids, write_oracle)  # consistent: taken under the oracle's lock
        for trial_id, text in trials.items():
            replace(oracle.trial_file(trial_id), text, unlink_first=True)
        if state is not None:  # last: it never names a trial whose file is not yet written
            replace(oracle.state_file, state, unlink_first=True)

    def _failed(self, exc: BaseException) -> None:
        """Count a failed write; log the first of a run of them only (the disk stays full a while)."""
        first = self._error is None
        self._failures += 1
        self._error = f"{type(exc).__name__}: {exc}"
        self._backoff = BACKOFF_SECONDS[0] if first else min(2 * self._backoff, BACKOFF_SECONDS[1])
        if first:
            log.error("could not write the oracle's state (%s); retrying until it can", self._error, exc_info=exc)

    def _recovered(self) -> None:
        if self._error is not None:
            log.warning("the oracle's state is written again, after %d failed write(s)", self._failures)
            self._error, self._backoff = None, 0.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                self._changed.wait_for(
                    lambda: self._marked > self._written or bool(self._lazy_trials) or self._stop.is_set()
                )
            try:
                self.flush(everything=False)
            except Exception:  # a full disk must not kill the search: retried after a backoff
                self._give_up(self.patience)
                self._stop.wait(self._backoff)
                continue
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="oracle-persister", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the writer after a last write, retried for up to ``patience`` seconds; raises
        ``NotWritten`` if it never succeeds (the state on disk is then the last one written)."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        deadline = time.monotonic() + self.patience
        try:
            while True:
                try:
                    self.flush()
                    break
                except OSError as exc:
                    if time.monotonic() >= deadline:
                        raise NotWritten(f"the coordinator could not write its state: {self._error}") from exc
                    time.sleep(self._backoff)
        except BaseException:
            self._give_up(0)
            raise
        self._complete(self._marked)
