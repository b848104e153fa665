"""Which oracle a config asks for: Keras Tuner's algorithm with fmtune's oracle mixed in, and the
experiment's early-stopping rule."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from fmtune.config import ExperimentConfig
from fmtune.tuning.bayesian import FmtuneBayesianOracle
from fmtune.tuning.oracle import FmtuneOracle
from fmtune.tuning.stopping import Asha, MedianStopping, StoppingRule

ORACLE_CLASSES: dict[str, type[kt.Oracle]] = {
    "bayesian": kt.oracles.BayesianOptimizationOracle,
    "random": kt.oracles.RandomSearchOracle,
    "hyperband": kt.oracles.HyperbandOracle,
    "grid": kt.oracles.GridSearchOracle,
}


def stopping_rule(cfg: ExperimentConfig) -> StoppingRule | None:
    """The experiment's early-stopping rule, if it has one (the config allows one at most)."""
    maximise = cfg.search.objective.direction == "max"
    asha, median = cfg.search.asha, cfg.fault_tolerance.median_stopping
    if asha.enabled:
        return Asha(maximise, asha.reduction_factor, asha.grace_epochs, cfg.search.epochs)
    if median.enabled:
        return MedianStopping(maximise, median.min_trials, median.start_step)
    return None


def make_oracle(cfg: ExperimentConfig) -> FmtuneOracle:
    search, tolerance = cfg.search, cfg.fault_tolerance
    base = ORACLE_CLASSES[search.algorithm]
    cls = (
        FmtuneBayesianOracle
        if search.algorithm == "bayesian"
        else type(f"Fmtune{base.__name__}", (FmtuneOracle, base), {})
    )
    kwargs: dict[str, Any] = {
        "objective": kt.Objective(search.objective.name, search.objective.direction),
        "seed": cfg.seed,
        "tolerance": tolerance,
        "stopping": stopping_rule(cfg),
        "max_retries_per_trial": tolerance.max_retries_per_trial,
    }
    if search.algorithm == "hyperband":
        kwargs.update(max_epochs=search.epochs, factor=search.hyperband_factor)
    oracle: FmtuneOracle = cls(**kwargs)
    # Set after construction, for every algorithm: Hyperband takes no max_trials, and for it this
    # is a cap on top of its own schedule.
    oracle.max_trials = search.max_trials
    return oracle
