"""Median stopping (Golovin et al., "Google Vizier: A Service for Black-Box Optimization", KDD 2017;
Katib's ``medianstop``)."""

from __future__ import annotations

import statistics

from fmtune.tuning.stopping.base import Cohort, Curve, Decision, StoppingRule


def running_average(curve: Curve, step: int) -> float | None:
    """The mean of a curve's values up to and including ``step``.

    >>> running_average({0: 0.5, 1: 0.7, 2: 0.9}, 1)
    0.6
    """
    values = [value for epoch, value in curve.items() if epoch <= step]
    return statistics.fmean(values) if values else None


class MedianStopping(StoppingRule):
    """Stop a trial whose best objective so far is worse than the median of the completed trials'
    running averages at the same epoch.

    Args:
        maximise: whether a higher objective is better.
        min_trials: completed trials needed before the rule stops anything.
        start_step: the first epoch (0-based) at which a trial may be stopped.

    >>> rule = MedianStopping(maximise=True, min_trials=2, start_step=1)
    >>> done = [{0: 0.8, 1: 0.9}, {0: 0.7, 1: 0.8}]
    >>> rule.on_result({0: 0.5, 1: 0.6}, 1, Cohort(done, done)).value
    'stop'
    >>> rule.on_result({0: 0.85, 1: 0.86}, 1, Cohort(done, done)).value
    'continue'
    """

    def __init__(self, maximise: bool, min_trials: int, start_step: int):
        self.maximise, self.min_trials, self.start_step = maximise, min_trials, start_step

    def on_result(self, curve: Curve, step: int, cohort: Cohort) -> Decision:
        values = [v for v in curve.values() if v == v]  # NaN (a diverged epoch) is the one value not equal to itself
        if step < self.start_step or not values:
            return Decision.CONTINUE
        averages = [a for a in (running_average(c, step) for c in cohort.completed) if a is not None]
        if len(averages) < self.min_trials:
            return Decision.CONTINUE
        best = max(values) if self.maximise else min(values)
        median = statistics.median(averages)
        worse = best < median if self.maximise else best > median
        return Decision.STOP if worse else Decision.CONTINUE
