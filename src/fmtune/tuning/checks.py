"""What the coordinator accepts from a caller of its Oracle service.

Whoever reaches the oracle port could otherwise decide which model is retrained and deployed: a
made-up tuner id, a metric no model reached, a hyperparameter outside the declared space. Each
check raises ``RequestError`` naming the problem; the servicer answers INVALID_ARGUMENT and changes
nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import keras_tuner as kt

from fmtune.tuning.roles import RoleError, check_worker_id

MAX_METRICS = 64
METRIC_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
MAX_TUNER_ID = 64
# Keras Tuner's own bookkeeping values (Hyperband's brackets), which no hypermodel declares.
TUNER_VALUE = re.compile(r"^tuner/(epochs|initial_epoch|bracket|round|trial_id)$")


class RequestError(ValueError):
    """A call the coordinator refuses, with the reason."""


def tuner_id(value: str) -> str:
    if not value or len(value) > MAX_TUNER_ID:
        raise RequestError(f"tuner id must be 1 to {MAX_TUNER_ID} characters, got {len(value)}")
    if value == "chief":
        raise RequestError("tuner id 'chief' is the coordinator's own")
    try:
        return check_worker_id(value)
    except RoleError as exc:
        raise RequestError(str(exc)) from None


def metrics(values: Mapping[str, float], objective: str) -> dict[str, float]:
    """At most MAX_METRICS metrics, the objective among them, with plain names and float values
    (NaN allowed: a diverged epoch)."""
    if objective not in values:
        raise RequestError(f"a report must hold the objective, {objective}")
    if len(values) > MAX_METRICS:
        raise RequestError(f"{len(values)} metrics in one report; at most {MAX_METRICS}")
    for name, value in values.items():
        if not METRIC_NAME.match(name):
            raise RequestError(f"metric name {name[:40]!r} is not 1-128 letters, digits or ._:/-")
        if math.isinf(value):
            raise RequestError(f"metric {name} is infinite")
    return dict(values)


def _allowed(hp: Any, value: Any) -> bool:
    """Whether ``value`` is one the declared hyperparameter ``hp`` can take."""
    if isinstance(hp, kt.engine.hyperparameters.Fixed):
        return bool(value == hp.value)
    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return isinstance(value, bool)
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return any(
            value == choice
            and isinstance(value, bool) == isinstance(choice, bool)
            and isinstance(value, str) == isinstance(choice, str)
            for choice in hp.values
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    if isinstance(hp, kt.engine.hyperparameters.Int):
        step = hp.step or 1
        in_range = hp.min_value <= value <= hp.max_value
        return float(value).is_integer() and in_range and (value - hp.min_value) % step == 0
    if isinstance(hp, kt.engine.hyperparameters.Float):
        return bool(hp.min_value - 1e-12 <= value <= hp.max_value + 1e-12)
    return False


def values_in_space(space: Iterable[Any], values: Mapping[str, Any]) -> None:
    """Every value names a declared hyperparameter (or Keras Tuner's own) and is one it can take."""
    declared = {hp.name: hp for hp in space}
    for name, value in values.items():
        if TUNER_VALUE.match(name):
            continue
        hp = declared.get(name)
        if hp is None:
            raise RequestError(f"hyperparameter {name[:40]!r} is not in the search space")
        if not _allowed(hp, value):
            raise RequestError(f"hyperparameter {name} = {str(value)[:40]!r} is outside the search space")


def space_within(declared: Iterable[Any], update: Iterable[Any]) -> None:
    """A space update may only repeat what the hypermodel declared: the space cannot grow."""
    known = {hp.name for hp in declared}
    extra = sorted({hp.name for hp in update} - known)
    if extra:
        shown = ", ".join(name[:40] for name in extra[:5])
        raise RequestError(f"the search space is fixed; {len(extra)} undeclared hyperparameter(s): {shown}")
