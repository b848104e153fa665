"""Leases on running trials and the liveness of workers.

Keras Tuner waits forever for a worker that died mid-trial. Here, as with optuna's heartbeat and
``fail_stale_trials``, every running trial has a lease that the worker's heartbeats and reports
renew; a trial whose lease runs out is taken back, and a worker silent that long between trials
is no longer waited for. This class only keeps the times; the oracle decides what follows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class Leases:
    """Lease deadlines per trial and the last call per worker, on one monotonic clock.

    >>> now = [0.0]
    >>> leases = Leases(10.0, clock=lambda: now[0])
    >>> leases.renew("7"); leases.seen("tuner0")
    >>> now[0] = 11.0
    >>> leases.expired(["7"]), leases.silent(["tuner0"])
    (['7'], ['tuner0'])
    """

    def __init__(self, lease_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._deadlines: dict[str, float] = {}  # trial id -> when its lease runs out
        self._last_seen: dict[str, float] = {}  # tuner id -> its last call
        self.started = clock()

    def renew(self, trial_id: str) -> None:
        self._deadlines[trial_id] = self.clock() + self.lease_seconds

    def release(self, trial_id: str) -> None:
        self._deadlines.pop(trial_id, None)

    def seen(self, tuner_id: str) -> None:
        self._last_seen[tuner_id] = self.clock()

    def expired(self, trial_ids: Iterable[str]) -> list[str]:
        """The trials among ``trial_ids`` whose lease has run out (a trial with none has not)."""
        now = self.clock()
        return [t for t in trial_ids if self._deadlines.get(t, now) < now]

    def silent(self, tuner_ids: Iterable[str]) -> list[str]:
        """The workers among ``tuner_ids`` not heard from for longer than a lease."""
        cutoff = self.clock() - self.lease_seconds
        return [t for t in tuner_ids if self._last_seen.get(t, cutoff) < cutoff]

    def quiet_for(self) -> float:
        """Seconds since any worker called (since these leases began, if none has)."""
        last = max(self._last_seen.values(), default=self.started)
        return self.clock() - last

    # -- read-only views, for the run state ------------------------------------------------------

    def last_calls(self) -> dict[str, float]:
        """Each worker's last call, on this clock."""
        return dict(self._last_seen)

    def deadline(self, trial_id: str) -> float | None:
        """When the trial's lease runs out, on this clock (None: it holds none)."""
        return self._deadlines.get(trial_id)
