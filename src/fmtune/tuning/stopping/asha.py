"""Asynchronous successive halving (Li et al., "A System for Massively Parallel Hyperparameter
Tuning", MLSys 2020), in its stopping form, as Ray Tune's ``AsyncHyperBandScheduler`` runs it."""

from __future__ import annotations

import math

import numpy as np

from fmtune.tuning.stopping.base import Cohort, Curve, Decision, StoppingRule


def rungs(grace_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs (counted from 1) at which trials are judged: ``grace * eta**k`` below the maximum.

    >>> rungs(1, 3, 27)
    [1, 3, 9]
    >>> rungs(2, 2, 8)
    [2, 4]
    """
    found, epochs = [], grace_epochs
    while epochs < max_epochs:
        found.append(epochs)
        epochs *= reduction_factor
    return found


def cutoff(recorded: list[float], reduction_factor: int, maximise: bool) -> float | None:
    """The value a trial must reach at a rung to go on: the ``1 - 1/eta`` quantile of the values
    recorded there before it (the ``1/eta`` one when lower is better); None when there are none.

    >>> cutoff([0.5, 0.6, 0.7, 0.8], 3, maximise=True)
    0.7
    """
    values = [v for v in recorded if not math.isnan(v)]
    if not values:
        return None
    share = 1 - 1 / reduction_factor if maximise else 1 / reduction_factor
    return float(np.percentile(values, 100 * share))


class Asha(StoppingRule):
    """Every trial trains until its first rung. At each rung it goes on only if its objective there
    is at least the cutoff of the trials that reached that rung before it (``cutoff``); so about one
    in ``reduction_factor`` trials goes on, no trial ever waits for a rung to fill, and a worker
    whose trial stops takes a new one at once.

    Args:
        maximise: whether a higher objective is better.
        reduction_factor: eta, about one trial in this many goes on at each rung.
        grace_epochs: the first rung; rungs follow at ``grace_epochs * eta**k`` epochs.
        max_epochs: a trial's full length; reaching it ends the trial, so it is no rung.

    >>> rule = Asha(maximise=True, reduction_factor=2, grace_epochs=1, max_epochs=4)
    >>> first = {0: 0.6}
    >>> rule.on_result(first, 0, Cohort([], [])).value  # nothing recorded at the rung yet
    'continue'
    >>> rule.on_result({0: 0.5}, 0, Cohort([], [first])).value
    'stop'
    >>> rule.on_result({0: 0.5, 1: 0.7}, 1, Cohort([], [first])).value  # epoch 2 is a rung no one reached
    'continue'
    """

    def __init__(self, maximise: bool, reduction_factor: int, grace_epochs: int, max_epochs: int):
        self.maximise, self.reduction_factor = maximise, reduction_factor
        self.first_rung = min(grace_epochs, max_epochs)
        self.milestones = set(rungs(grace_epochs, reduction_factor, max_epochs))

    def rung(self, epochs: int) -> int | None:
        """The highest rung a trial that ran ``epochs`` epochs reached (0: the first), if any.

        >>> Asha(True, 3, 1, 9).rung(4), Asha(True, 3, 1, 9).rung(0)
        (1, None)
        """
        reached = [r for r in sorted(self.milestones) if r <= epochs]
        return len(reached) - 1 if reached else None

    def on_result(self, curve: Curve, step: int, cohort: Cohort) -> Decision:
        if step + 1 not in self.milestones or step not in curve:
            return Decision.CONTINUE
        threshold = cutoff([c[step] for c in cohort.everyone if step in c], self.reduction_factor, self.maximise)
        value = curve[step]
        if threshold is None or math.isnan(value):
            return Decision.CONTINUE if threshold is None else Decision.STOP
        below = value < threshold if self.maximise else value > threshold
        return Decision.STOP if below else Decision.CONTINUE
