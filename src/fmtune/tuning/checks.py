"""What the coordinator accepts from a caller of its Oracle service.

Whoever reaches the oracle port could otherwise decide which model is retrained and deployed: a
made-up tuner id, a metric no model reached, a hyperparameter outside the declared space, a space
update that redeclares a hyperparameter (Keras Tuner merges any new (name, conditions) pair, and its
sampler then draws from it), Hyperband's own ``tuner/`` values changed to train for 10^9 epochs or
to load a checkpoint from a made-up trial. Each check raises ``RequestError`` naming the problem;
the servicer answers INVALID_ARGUMENT and changes nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import keras_tuner as kt

from fmtune.tuning.roles import RoleError, check_worker_id

MAX_METRICS = 64
METRIC_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
MAX_TUNER_ID = 64
# Keras Tuner's own bookkeeping values (Hyperband's brackets), which no hypermodel declares.
TUNER_VALUE = re.compile(r"^tuner/(epochs|initial_epoch|bracket|round|trial_id)$")
TUNER_PREFIX = "tuner/"
# How far a hypermodel that declares more as trials run may grow the space.
MAX_HYPERPARAMETERS = 256
MAX_CHOICES = 1000
MAX_NAME = 128
MAX_TEXT = 256
MAX_CONDITIONS = 8
# Metrics whose range is known from their name: a report outside it is no model's.
FRACTION = re.compile(r"(^|_)(accuracy|acc|auc|precision|recall)$")
NON_NEGATIVE = re.compile(r"(^|_)(loss|crossentropy)$")
FRACTION_SLACK = 1e-6  # float32 rounding of a mean of 0s and 1s


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


def objective(name: str, value: float) -> None:
    """The objective's value is one the metric can take: a fraction for accuracies (and AUC,
    precision, recall), at least 0 for losses, and never infinite. NaN is let through: it is a
    diverged epoch, which Keras Tuner scores as an invalid trial, never the best."""
    if math.isnan(value):
        return
    if math.isinf(value):
        raise RequestError(f"objective {name} is infinite")
    if FRACTION.search(name) and not -FRACTION_SLACK <= value <= 1 + FRACTION_SLACK:
        raise RequestError(f"objective {name} = {value!r} is not a fraction (0 to 1)")
    if NON_NEGATIVE.search(name) and value < 0:
        raise RequestError(f"objective {name} = {value!r} is negative, which no loss is")


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


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same kind (True is not 1, 1 is not "1")."""
    if isinstance(a, bool | str) or isinstance(b, bool | str):
        return type(a) is type(b) and bool(a == b)
    return bool(a == b)


def unchanged(sent: Mapping[str, Any], ended: Mapping[str, Any]) -> None:
    """A worker ends its trial with the values it was sent: it may add values for hyperparameters
    its hypermodel declares as it builds, never change one, nor any of Keras Tuner's ``tuner/``."""
    for name, value in sent.items():
        if name not in ended:
            if name.startswith(TUNER_PREFIX):
                raise RequestError(f"{name} was sent with the trial and is missing from its end")
            continue
        if not _same(value, ended[name]):
            raise RequestError(
                f"hyperparameter {name} was sent as {str(value)[:40]!r}, ended as {str(ended[name])[:40]!r}"
            )
    added = sorted(name for name in ended if name.startswith(TUNER_PREFIX) and name not in sent)
    if added:
        raise RequestError(f"{added[0][:40]} is the coordinator's to set, not the worker's")


@dataclass(frozen=True)
class TunerLimits:
    """What Keras Tuner's own ``tuner/`` values may be under this oracle: Hyperband's (the only
    algorithm here that sets them) epochs up to its maximum, its brackets and rounds, and the id
    of a trial of this oracle whose weights the trial continues. ``max_epochs`` None: the oracle
    sets none, so a trial holds none."""

    max_epochs: int | None
    brackets: int
    trial_ids: Container[str]


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise RequestError(f"{name} = {str(value)[:40]!r} is not an integer")
    if not low <= value <= high:
        raise RequestError(f"{name} = {value!r} is outside {low} to {high}")
    return int(value)


def tuner_values(values: Mapping[str, Any], limits: TunerLimits) -> None:
    """Keras Tuner's ``tuner/`` values are within what the oracle could have set."""
    present = {name: value for name, value in values.items() if name.startswith(TUNER_PREFIX)}
    if not present:
        return
    if limits.max_epochs is None:
        raise RequestError(f"{sorted(present)[0][:40]} is set, but this search's algorithm sets no tuner/ values")
    for name in present:
        if not TUNER_VALUE.match(name):
            raise RequestError(f"{name[:40]} is not one of Keras Tuner's tuner/ values")
    epochs = _integer("tuner/epochs", present.get("tuner/epochs", 1), 1, limits.max_epochs)
    _integer("tuner/initial_epoch", present.get("tuner/initial_epoch", 0), 0, epochs)
    bracket = _integer("tuner/bracket", present.get("tuner/bracket", 0), 0, max(limits.brackets - 1, 0))
    _integer("tuner/round", present.get("tuner/round", 0), 0, bracket)
    parent = present.get("tuner/trial_id")
    if parent is not None and (not isinstance(parent, str) or parent not in limits.trial_ids):
        raise RequestError(f"tuner/trial_id = {str(parent)[:40]!r} is no trial of this search")


def _key(hp: Any) -> tuple[str, str]:
    return hp.name, repr([c.get_config() for c in hp.conditions])


def _bounded(hp: Any) -> None:
    """A hyperparameter a worker adds is small: a plain name, few conditions and choices, short
    texts and finite numbers."""
    name = hp.name
    if not 1 <= len(name) <= MAX_NAME or name.startswith(TUNER_PREFIX):
        raise RequestError(f"hyperparameter name {name[:40]!r} must be 1 to {MAX_NAME} characters, not tuner/...")
    if len(hp.conditions) > MAX_CONDITIONS:
        raise RequestError(f"hyperparameter {name[:40]} has {len(hp.conditions)} conditions; at most {MAX_CONDITIONS}")
    config = hp.get_config()
    choices = list(config.get("values") or [])
    for condition in hp.conditions:
        choices += list(condition.get_config().get("values") or [])
    if len(choices) > MAX_CHOICES:
        raise RequestError(f"hyperparameter {name[:40]} has {len(choices)} choices; at most {MAX_CHOICES}")
    for key in ("min_value", "max_value", "step", "default", "value", *(["values"] if choices else [])):
        for item in choices if key == "values" else [config.get(key)]:
            if isinstance(item, str) and len(item) > MAX_TEXT:
                raise RequestError(f"hyperparameter {name[:40]}: a text of {len(item)} characters; at most {MAX_TEXT}")
            if isinstance(item, float) and not math.isfinite(item):
                raise RequestError(f"hyperparameter {name[:40]}: {key} is not finite")


def space_update(declared: Iterable[Any], update: Iterable[Any], fixed: bool) -> None:
    """A space update may repeat what was declared (Keras Tuner ignores a hyperparameter whose
    name and conditions it has), never declare a declared name under other conditions: Keras Tuner
    would merge it, and its sampler draw from it. A fixed space takes nothing new; a growing one
    takes new names up to MAX_HYPERPARAMETERS in all, each ``_bounded``."""
    known = {_key(hp) for hp in declared}
    names = {name for name, _ in known}
    added: dict[tuple[str, str], Any] = {}
    for hp in update:
        key = _key(hp)
        if key in known:
            continue
        if hp.name in names:
            raise RequestError(
                f"hyperparameter {hp.name[:40]} is declared already; "
                "a space update cannot declare it under other conditions"
            )
        added[key] = hp
    if not added:
        return
    if fixed:
        extra = sorted({name for name, _ in added})
        shown = ", ".join(name[:40] for name in extra[:5])
        raise RequestError(f"the search space is fixed; {len(extra)} undeclared hyperparameter(s): {shown}")
    if len(known) + len(added) > MAX_HYPERPARAMETERS:
        raise RequestError(
            f"the space would hold {len(known) + len(added)} hyperparameters; at most {MAX_HYPERPARAMETERS}"
        )
    for hp in added.values():
        _bounded(hp)
