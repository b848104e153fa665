"""Which oracle a config asks for: Keras Tuner's algorithm with fmtune's oracle mixed in, and the
experiment's early-stopping rule."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import keras_tuner as kt

from fmtune.config import FaultTolerance, SearchConfig
from fmtune.tuning.bayesian import FmtuneBayesianOracle
from fmtune.tuning.oracle import FmtuneOracle
from fmtune.tuning.stopping import Asha, MedianStopping, StoppingRule

ORACLE_CLASSES: dict[str, type[kt.Oracle]] = {
    "bayesian": kt.oracles.BayesianOptimizationOracle,
    "random": kt.oracles.RandomSearchOracle,
    "hyperband": kt.oracles.HyperbandOracle,
    "grid": kt.oracles.GridSearchOracle,
}


def stopping_rule(search: SearchConfig, tolerance: FaultTolerance) -> StoppingRule | None:
    """The search's early-stopping rule, if it has one (the config allows one at most)."""
    maximise = search.objective.direction == "max"
    asha, median = search.asha, tolerance.median_stopping
    if asha.enabled:
        return Asha(maximise, asha.reduction_factor, asha.grace_epochs, search.epochs)
    if median.enabled:
        return MedianStopping(maximise, median.min_trials, median.start_step)
    return None


def make_oracle(
    search: SearchConfig, tolerance: FaultTolerance, seed: int, clock: Callable[[], float] = time.time
) -> FmtuneOracle:
    """The oracle for ``search``: needs no dataset nor anything else of an experiment."""
    base = ORACLE_CLASSES[search.algorithm]
    cls = (
        FmtuneBayesianOracle
        if search.algorithm == "bayesian"
        else type(f"Fmtune{base.__name__}", (FmtuneOracle, base), {})
    )
    kwargs: dict[str, Any] = {
        "objective": kt.Objective(search.objective.name, search.objective.direction),
        "seed": seed,
        "tolerance": tolerance,
        "stopping": stopping_rule(search, tolerance),
        "max_retries_per_trial": tolerance.max_retries_per_trial,
        "clock": clock,
    }
    if search.algorithm == "hyperband":
        kwargs.update(max_epochs=search.epochs, factor=search.hyperband_factor)
    oracle: FmtuneOracle = cls(**kwargs)
    # Set after construction, for every algorithm: Hyperband takes no max_trials, and for it this
    # is a cap on top of its own schedule.
    oracle.max_trials = search.max_trials
    return oracle
