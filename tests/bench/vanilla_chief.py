"""Vanilla Keras Tuner's chief, for side-by-side figures: its own oracle and its own server loop.

It serves the same search space as fmtune's coordinator (the quick preset's MLP) on
KERASTUNER_ORACLE_IP/PORT. Usage: python -m tests.bench.vanilla_chief ALGORITHM MAX_TRIALS WORKDIR
"""

from __future__ import annotations

import sys

import keras_tuner as kt
from keras_tuner.src.distribute import oracle_chief

from fmtune.models.families import MLP

ORACLES = {"random": kt.oracles.RandomSearchOracle, "bayesian": kt.oracles.BayesianOptimizationOracle}


def main() -> None:
    algorithm, max_trials, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    space = kt.HyperParameters()
    MLP().build(space)
    oracle = ORACLES[algorithm](
        objective=kt.Objective("val_accuracy", "max"), max_trials=max_trials, hyperparameters=space, seed=42
    )
    oracle.verbose = 0
    oracle._set_project_dir(workdir, "vanilla")
    oracle_chief.start_server(oracle)


if __name__ == "__main__":
    main()
