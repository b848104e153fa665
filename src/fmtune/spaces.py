"""Search-space types and each model family's default space.

A leaf module: it imports nothing of fmtune and nothing of Keras, so the config (which validates
overrides against these spaces) and the hypermodels (which declare them to Keras Tuner) can both
depend on it without depending on each other.

Per-layer values (``units_0``, ``filters_1``...) take the family-wide spec (``units``) unless a
per-layer override is given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

Scalar = int | float | str | bool
Family = Literal["mlp", "cnn", "deep_cnn", "vgg"]


class Strict(BaseModel):
    """Frozen, and unknown keys are errors: a typo in a config must not pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _Range(Strict):
    sampling: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        low, high = self.min, self.max  # type: ignore[attr-defined]
        if low > high:
            raise ValueError(f"min ({low}) must not exceed max ({high})")
        if self.sampling == "log" and low <= 0:
            raise ValueError("log sampling needs min > 0")
        return self


class IntRange(_Range):
    type: Literal["int"] = "int"
    min: int
    max: int
    step: PositiveInt | None = None


class FloatRange(_Range):
    type: Literal["float"] = "float"
    min: float
    max: float
    step: float | None = Field(default=None, gt=0)


class Choice(Strict):
    type: Literal["choice"] = "choice"
    values: list[Scalar] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _one_type(cls, values: list[Scalar]) -> list[Scalar]:
        kinds = {type(v) for v in values}
        if len(kinds) > 1 and kinds != {int, float}:
            raise ValueError(f"choice values must share one type, got {sorted(k.__name__ for k in kinds)}")
        if len(set(values)) != len(values):
            raise ValueError("choice values must be distinct")
        return values


class Fixed(Strict):
    type: Literal["fixed"] = "fixed"
    value: Scalar


HyperParameterSpec = Annotated[IntRange | FloatRange | Choice | Fixed, Field(discriminator="type")]
SPEC_TAGS = {"int", "float", "choice", "fixed"}


def shorthand_spec(raw: Any) -> Any:
    """A YAML list means a choice, a bare scalar a fixed value, and ``{min, max}`` a range.

    >>> shorthand_spec([32, 64])
    {'type': 'choice', 'values': [32, 64]}
    >>> shorthand_spec({"min": 1, "max": 3})["type"]
    'int'
    """
    if isinstance(raw, list):
        return {"type": "choice", "values": raw}
    if isinstance(raw, int | float | str | bool):
        return {"type": "fixed", "value": raw}
    if isinstance(raw, dict) and "type" not in raw:
        if "values" in raw:
            return {"type": "choice", **raw}
        if "value" in raw:
            return {"type": "fixed", **raw}
        if {"min", "max"} <= raw.keys():
            numbers = [raw["min"], raw["max"], raw.get("step") or 1]
            kind = "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in numbers) else "float"
            return {"type": kind, **raw}
    return raw


def is_finite(spec: HyperParameterSpec) -> bool:
    """True when the spec has a finite set of values (what grid search needs)."""
    return isinstance(spec, Choice | Fixed | IntRange) or spec.step is not None


def spec_values(spec: HyperParameterSpec) -> list[Any]:
    """The finite values an integer-like spec can take (used for conditional layers).

    >>> spec_values(IntRange(min=1, max=3))
    [1, 2, 3]
    """
    if isinstance(spec, Fixed):
        return [spec.value]
    if isinstance(spec, Choice):
        return list(spec.values)
    if isinstance(spec, IntRange):
        return list(range(spec.min, spec.max + 1, spec.step if spec.sampling == "linear" and spec.step else 1))
    raise ValueError(f"{spec} is not a discrete spec")


_LR = FloatRange(min=1e-4, max=1e-2, sampling="log")
_BATCH = Choice(values=[32, 64, 128])

DEFAULTS: dict[str, dict[str, HyperParameterSpec]] = {
    "mlp": {
        "num_layers": IntRange(min=1, max=3),
        "units": IntRange(min=64, max=512, step=64),
        "dropout": FloatRange(min=0.1, max=0.5, step=0.05),
        "learning_rate": _LR,
        "batch_size": _BATCH,
    },
    "cnn": {
        "filters": IntRange(min=32, max=128, step=32),
        "kernel_size": Choice(values=[3, 5]),
        "units": IntRange(min=32, max=128, step=32),
        "dropout": FloatRange(min=0.0, max=0.5, step=0.1),
        "l2": FloatRange(min=1e-6, max=1e-3, sampling="log"),
        "learning_rate": _LR,
        "batch_size": _BATCH,
    },
    "deep_cnn": {
        "conv_layers": Choice(values=[2, 4, 6]),
        "filters": IntRange(min=16, max=64, step=16),
        "units": IntRange(min=64, max=256, step=64),
        "dropout": FloatRange(min=0.1, max=0.5, step=0.1),
        "learning_rate": _LR,
        "batch_size": _BATCH,
    },
    "vgg": {
        "blocks": Choice(values=[2, 3]),
        "width": Choice(values=[16, 24, 32, 48]),
        "units": Choice(values=[128, 256]),
        "dropout": FloatRange(min=0.1, max=0.5, step=0.1),
        "learning_rate": FloatRange(min=3e-4, max=3e-3, sampling="log"),
        "batch_size": Choice(values=[64, 128, 256]),
    },
}
# Family-wide specs that are declared once per layer or block, as ``<name>_<index>``.
PER_LAYER = {"mlp": {"units", "dropout"}, "cnn": {"filters"}, "deep_cnn": set(), "vgg": set()}


def check_overrides(family: str, overrides: Mapping[str, Any]) -> list[str]:
    """One message per override that names no hyperparameter of the family."""
    known = DEFAULTS[family]
    problems = []
    for name in overrides:
        match = re.fullmatch(r"(.+)_(\d+)", name)
        if name in known or (match and match.group(1) in PER_LAYER[family]):
            continue
        problems.append(
            f"search.hyperparameters.{name}: not a hyperparameter of '{family}' (known: {', '.join(sorted(known))})"
        )
    return problems


def resolved_specs(family: str, overrides: Mapping[str, HyperParameterSpec]) -> dict[str, HyperParameterSpec]:
    return {**DEFAULTS[family], **overrides}


def spec_for(specs: Mapping[str, HyperParameterSpec], name: str) -> HyperParameterSpec | None:
    """The spec that governs hyperparameter ``name``: its own, or its family-wide one (``units_1``
    falls back to ``units``).

    >>> spec_for({"units": Fixed(value=8)}, "units_1")
    Fixed(type='fixed', value=8)
    """
    if name in specs:
        return specs[name]
    match = re.fullmatch(r"(.+)_(\d+)", name)
    return specs.get(match.group(1)) if match else None
