"""The one answer to "is the search over?", for the oracle, its suggestions and the coordinator.

The search is *closed* (no new trial is handed out) once it aborted or the run's ``search_open``
says time is up (the budget, ``fmtune.run.budget``). Trials stop *starting* a little before, when
``starts_open`` says one could not end an epoch in time; then a worker asking for one is told the
search is over, and the running trials go on until it closes. It is *full* once ``max_trials`` trials were
made and none waits to be retried. It is *over* when no trial is running and it is closed, full or
a worker was told so (``stop_sent``); the coordinator is *done* serving when it is over and no
worker is still waiting for an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("fmtune")


def always_open() -> bool:
    return True


class SearchControl:
    def __init__(
        self,
        max_trials: Callable[[], int | None],
        search_open: Callable[[], bool] = always_open,
        starts_open: Callable[[], bool] = always_open,
    ):
        self.max_trials = max_trials  # the oracle's, which a config may set after it is made
        self.search_open, self.starts_open = search_open, starts_open
        self.abort_reason: str | None = None
        self.stop_sent = False  # a worker was told the search is over

    def abort(self, reason: str) -> bool:
        """Stop the search for ``reason``; False if it was stopped already."""
        if self.abort_reason is not None:
            return False
        self.abort_reason = reason
        log.error("stopping the search: %s", reason)
        return True

    def closed(self) -> bool:
        return self.abort_reason is not None or not self.search_open()

    def may_start(self) -> bool:
        """Whether a trial (new or retried) may start now."""
        return not self.closed() and self.starts_open()

    def full(self, trials: int, queued: int) -> bool:
        limit = self.max_trials()
        return limit is not None and trials >= limit and not queued

    def may_create(self, trials: int, queued: int) -> bool:
        """Whether a new trial (not a retried one) could be made now."""
        limit = self.max_trials()
        return self.may_start() and not queued and (limit is None or trials < limit)

    def over(self, running: int, trials: int, queued: int) -> bool:
        """No trial is running and none will be handed out. A trial taken back from a dead worker
        after a worker was told the search is over is not run again: the workers it would go to
        have left."""
        if running:
            return False
        return self.stop_sent or self.closed() or self.full(trials, queued)

    def done(self, running: int, trials: int, queued: int, waiting: int) -> bool:
        """Over, and every worker that asked has been told so."""
        return self.over(running, trials, queued) and not waiting
