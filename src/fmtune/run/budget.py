"""A wall-time budget for the whole pipeline: when it began, how long the search may go on, and
what is left for retraining the best configuration and exporting it. This is its one owner.

The budget begins once per experiment, at its first start (``fmtune tune`` before it launches
anything; on Kubernetes the first coordinator start), and that start is kept in the experiment
directory (``budget.json``), so a restarted coordinator or a resumed run keeps the same deadline.

The search closes when only the reserve is left: ``retrain.budget_share`` of the budget, but no
less than ``retrain.min_epochs`` epochs of retraining and no more than ``retrain.max_epochs`` (time
kept beyond those would go unused), each at the cost the search measured (a trial's epoch, scaled
to the retraining's images and threads: ``epoch_scale``), and FINISH_SECONDS for the test
evaluation and the export. A new trial starts only while one epoch of it (the median first
epoch so far) would end before then: begun later, it delays the close by that epoch, with the other
cores idle, and its one epoch buys nothing. Retraining then sizes its epochs to the time that really remains, up
to ``retrain_deadline``, which keeps EXPORT_SECONDS for the export and the exit.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fmtune import devices, training
from fmtune.config import ExperimentConfig
from fmtune.data import Dataset
from fmtune.files import replace
from fmtune.tuning.bookkeeping import Book

log = logging.getLogger("fmtune")

# The figures behind them ("export" in each run's timing) are in reports/accuracy.md.
FINISH_SECONDS = 30.0
EXPORT_SECONDS = 10.0
# An image's forward pass alone (a trial's validation) against a training step's forward and backward.
VALIDATION_COST = 1 / 3


def no_costs() -> list[float]:
    return []


class Budget:
    """Deadlines from a start time (wall clock, so that a restarted coordinator keeps them).

    ``epoch_costs`` gives the trial epochs measured so far that best predict a retraining epoch,
    and ``epoch_scale`` a retraining epoch's images over a trial epoch's.

    >>> budget = Budget(600, started_at=0.0, retrain_share=0.5, min_epochs=5, max_epochs=20, clock=lambda: 100.0)
    >>> budget.remaining()
    500.0
    >>> budget.search_deadline()  # nothing measured yet: the share decides
    300.0
    >>> budget.epoch_costs = lambda: [80.0, 80.0]
    >>> budget.search_deadline()  # 5 epochs of 80 s and the finish do not fit in 300
    170.0
    >>> budget.epoch_costs = lambda: [5.0]
    >>> budget.search_deadline()  # 20 epochs of 5 s and the finish need less than the share
    470.0
    """

    def __init__(
        self,
        seconds: float,
        started_at: float,
        retrain_share: float,
        min_epochs: int,
        max_epochs: int | None = None,
        epoch_costs: Callable[[], list[float]] = no_costs,
        epoch_scale: float = 1.0,
        first_epochs: Callable[[], list[float]] = no_costs,
        clock: Callable[[], float] = time.time,
    ):
        self.seconds, self.started_at = seconds, started_at
        self.retrain_share, self.min_epochs, self.max_epochs = retrain_share, min_epochs, max_epochs
        self.epoch_costs, self.epoch_scale, self.first_epochs = epoch_costs, epoch_scale, first_epochs
        self.clock = clock

    @property
    def deadline(self) -> float:
        return self.started_at + self.seconds

    @property
    def retrain_deadline(self) -> float:
        """When retraining (with its evaluation) must end, leaving time for the export."""
        return self.deadline - EXPORT_SECONDS

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def used(self) -> float:
        return self.clock() - self.started_at

    def retrain_epoch_estimate(self) -> float | None:
        """What an epoch of retraining will cost, from the fastest of the trials' epochs (None:
        none measured). Interference only adds time: a trial's epochs share the cores with the
        other workers' and the coordinator's, while retraining runs alone, so the least disturbed
        epoch predicts it best: their median overestimated it on a host whose epoch times varied
        from one epoch to the next (reports/search-centre.md)."""
        costs = self.epoch_costs()
        return min(costs) * self.epoch_scale if costs else None

    def reserve(self) -> float:
        """Seconds kept for retraining and export."""
        share = self.retrain_share * self.seconds
        epoch = self.retrain_epoch_estimate()
        if not epoch:
            return share
        if self.max_epochs is not None:
            share = min(share, self.max_epochs * epoch + FINISH_SECONDS)
        return max(share, self.min_epochs * epoch + FINISH_SECONDS)

    def search_deadline(self) -> float:
        return self.deadline - self.reserve()

    def search_open(self) -> bool:
        return self.clock() < self.search_deadline()

    def starts_open(self) -> bool:
        """Whether a new trial may start: one epoch of it, at the median of the trials' first
        epochs so far, would end before the search closes."""
        first = self.first_epochs()
        return self.clock() + (statistics.median(first) if first else 0.0) < self.search_deadline()


def epoch_scale(trial: tuple[int, int], retrain: tuple[int, int], speedup: float = 1.0) -> float:
    """A retraining epoch's cost over a trial epoch's: ``trial`` and ``retrain`` are (images
    trained on, images validated on) per epoch, ``speedup`` how much faster retraining's threads
    run an epoch than a trial's (``thread_speedup``).

    >>> round(epoch_scale((15000, 6000), (60000, 0)), 2)  # standard: trials on a subset
    3.53
    >>> round(epoch_scale((15000, 6000), (60000, 0), speedup=thread_speedup(0.8, 1, 2)), 2)
    2.12
    """
    return (retrain[0] + VALIDATION_COST * retrain[1]) / (trial[0] + VALIDATION_COST * trial[1]) / speedup


def thread_speedup(parallel_share: float, trial_threads: int, retrain_threads: int) -> float:
    """How much faster an epoch runs on ``retrain_threads`` than on ``trial_threads``, by Amdahl's
    law: ``parallel_share`` of the work spreads over the threads, the rest does not.

    >>> round(thread_speedup(0.8, 1, 2), 2), thread_speedup(0.0, 1, 2), thread_speedup(0.8, 2, 2)
    (1.67, 1.0, 1.0)
    """
    return 1 / (1 - parallel_share + parallel_share * trial_threads / retrain_threads)


def retrain_epoch_scale(cfg: ExperimentConfig, dataset: Dataset, hypermodel: Any, trial_threads: int) -> float:
    """A retraining epoch's cost over a trial epoch's, from the images each trains and validates
    on, and the threads each has: a trial's ``trial_threads`` (0: as many as retraining's), and
    retraining's, all this container's CPUs, which speed up the share of the work that
    ``hypermodel`` declares spreads over threads (``parallel_share``; none if it declares none)."""
    retrain_images = training.retrain_samples(cfg, dataset)
    retrain_threads = devices.tensorflow_threads()
    speedup = thread_speedup(
        getattr(hypermodel, "parallel_share", 0.0), trial_threads or retrain_threads, retrain_threads
    )
    return epoch_scale(
        (len(training.trial_split(cfg, dataset)), len(dataset.val)),
        (retrain_images, len(dataset.train) + len(dataset.val) - retrain_images),
        speedup,
    )


def started_at(path: Path, outcome: str, clock: Callable[[], float] = time.time) -> float:
    """When the experiment's budget began: the time kept at ``path`` (``ExperimentDir.budget``)
    for the config whose outcome digest is ``outcome``, or now, kept there, if this is its first
    start under that config. A config that changes what the experiment produces (more trials, a
    lifted budget) gets a budget of its own: anchored at the first start, its search would end at
    once; one that changes only how faults are handled keeps the running one."""
    try:
        kept = json.loads(path.read_text())
        if kept.get("outcome") in (outcome, None):  # None: kept before the digest was
            return float(kept["started_at"])
        log.info("the experiment's config changed since its budget began: a new budget starts now")
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s is unreadable (%s): the budget starts again now", path, exc)
    now = clock()
    replace(path, json.dumps({"started_at": now, "outcome": outcome}).encode(), sync=True)
    return now


def trial_epoch_costs(book: Book) -> Callable[[], list[float]]:
    """The trial epochs that predict a retraining epoch: the best trial's so far (of every trial,
    before the best has any), each without its first, which also builds and traces the model."""

    def costs() -> list[float]:
        best = book.best_trial
        timed = book.later_epochs(best) if best is not None else []
        return timed or [s for trial_id in list(book.attempts) for s in book.later_epochs(trial_id)]

    return costs


def first_epoch_costs(book: Book) -> Callable[[], list[float]]:
    """Every trial's first epoch so far: what starting one more costs before it reports anything."""

    def costs() -> list[float]:
        return [a.epoch_seconds[0] for a in list(book.attempts.values()) if a.epoch_seconds]

    return costs
