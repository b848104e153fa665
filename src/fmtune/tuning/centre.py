"""The centre of a Keras Tuner space: the middle choice of each hyperparameter, the midpoint of each
range (the log-midpoint of a log range), on its step. It is the search's first trial, so that the
search always weighs what training the space's middle with no search would give (the no-search
baseline of reports/accuracy.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras_tuner as kt


def centre(hp: Any) -> Any:
    """The middle of one hyperparameter's range (``fill`` shows it)."""
    kind = type(hp).__name__
    if kind == "Choice":
        return hp.values[len(hp.values) // 2]
    if kind == "Fixed":
        return hp.value
    if kind == "Boolean":
        return hp.default
    low, high = hp.min_value, hp.max_value
    middle = math.sqrt(low * high) if hp.sampling == "log" else (low + high) / 2
    if hp.step is not None and hp.sampling != "log":
        middle = low + round((middle - low) / hp.step) * hp.step
    return round(middle) if kind == "Int" else float(middle)


def fill(space: Any, choose: Callable[[Any], Any] = centre) -> dict[str, Any]:
    """Values for the active hyperparameters of ``space`` (kt.HyperParameters), each from
    ``choose``: walked in order, as Keras Tuner's oracles do, so that a conditional hyperparameter
    gets a value only when its condition holds.

    >>> space = kt.HyperParameters()
    >>> space.Choice("batch_size", [64, 128, 256]), space.Int("units", 32, 512, step=32)
    (64, 32)
    >>> space.Float("lr", 1e-4, 1e-2, sampling="log"), space.Choice("layers", [1, 2])
    (0.0001, 1)
    >>> with space.conditional_scope("layers", [2]):
    ...     _ = space.Int("units_1", 32, 64)
    >>> {k: round(v, 6) for k, v in fill(space).items()}  # "units_1" is inactive at 1 layer
    {'batch_size': 128, 'units': 288, 'lr': 0.001, 'layers': 2, 'units_1': 48}
    """
    hps = kt.HyperParameters()
    for hp in space.space:
        hps.merge([hp])
        if hps.is_active(hp):
            hps.values[hp.name] = choose(hp)
    return {name: value for name, value in hps.values.items() if hps.is_active(name)}
