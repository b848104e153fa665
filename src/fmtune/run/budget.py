"""A wall-time budget for the whole pipeline: how long the search may go on, and what is left for
retraining the best configuration and exporting it.

The search closes when only the reserve is left: at least ``retrain.budget_share`` of the budget,
and at least ``retrain.min_epochs`` epochs of retraining at the cost the search measured (a trial's
epoch, scaled from its training set to the retraining set). Retraining then sizes its epochs to
the time that really remains (``fmtune.training``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable

# The search's reserve keeps this for the test evaluation and the export after retraining's last
# epoch; retraining itself plans for its evaluation and leaves EXPORT_SECONDS for the export and
# the exit. The figures behind them ("export" in each run's timing) are in reports/accuracy.md.
FINISH_SECONDS = 30.0
EXPORT_SECONDS = 10.0


class Budget:
    """Deadlines from a start time (wall clock, so that a restarted coordinator keeps them).

    >>> budget = Budget(600, started_at=0.0, retrain_share=0.5, min_epochs=5, clock=lambda: 100.0)
    >>> budget.remaining()
    500.0
    >>> budget.search_deadline(epoch_seconds=None)  # nothing measured yet: the share decides
    300.0
    >>> budget.search_deadline(epoch_seconds=80.0)  # 5 epochs of 80 s and the finish do not fit in 300
    170.0
    """

    def __init__(
        self,
        seconds: float,
        started_at: float,
        retrain_share: float,
        min_epochs: int,
        clock: Callable[[], float] = time.time,
    ):
        self.seconds, self.started_at = seconds, started_at
        self.retrain_share, self.min_epochs = retrain_share, min_epochs
        self.clock = clock

    @property
    def deadline(self) -> float:
        return self.started_at + self.seconds

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def used(self) -> float:
        return self.clock() - self.started_at

    def reserve(self, epoch_seconds: float | None) -> float:
        """Seconds kept for retraining and export, given a retraining epoch's estimated cost."""
        planned = self.min_epochs * epoch_seconds + FINISH_SECONDS if epoch_seconds else 0.0
        return max(self.retrain_share * self.seconds, planned)

    def search_deadline(self, epoch_seconds: float | None) -> float:
        return self.deadline - self.reserve(epoch_seconds)

    def search_open(self, epoch_seconds: float | None) -> bool:
        return self.clock() < self.search_deadline(epoch_seconds)


def typical_epoch(seconds: Iterable[float]) -> float | None:
    """The typical epoch among ``seconds``: their median (None for none).

    >>> typical_epoch([4.0, 4.2, 3.9, 9.0])
    4.1
    """
    values = list(seconds)
    return statistics.median(values) if values else None


def parse_duration(text: str) -> float:
    """Minutes from ``90s``, ``45m``, ``1.5h`` or a bare number of minutes.

    >>> parse_duration("1h"), parse_duration("90s"), parse_duration("4")
    (60.0, 1.5, 4.0)
    """
    units = {"s": 1 / 60, "m": 1.0, "h": 60.0}
    raw = text.strip().lower()
    scale = units.get(raw[-1:])
    number = raw[:-1] if scale is not None else raw
    try:
        minutes = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"'{text}' is not a duration such as 45m, 1.5h or 90s") from None
    if not minutes > 0 or minutes == float("inf"):
        raise ValueError(f"'{text}' is not a positive duration")
    return minutes
