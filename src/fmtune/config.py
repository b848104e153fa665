"""Experiment configuration: pydantic models, presets, and layered overrides.

Precedence, lowest first: preset -> YAML file -> environment (``FMTUNE_*``) -> CLI ``--set``.
Everything is validated once, up front, so a bad value stops the run before any process starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

Scalar = int | float | str | bool
Family = Literal["mlp", "cnn", "deep_cnn"]
Algorithm = Literal["bayesian", "random", "hyperband", "grid"]
PRESETS = ("quick", "standard", "mnist")
ENV_PREFIX = "FMTUNE_"


class ConfigError(ValueError):
    """A configuration that cannot run; ``problems`` holds one message per bad field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntRange(_Strict):
    type: Literal["int"] = "int"
    min: int
    max: int
    step: PositiveInt | None = None
    sampling: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.sampling == "log" and self.min <= 0:
            raise ValueError("log sampling needs min > 0")
        return self


class FloatRange(_Strict):
    type: Literal["float"] = "float"
    min: float
    max: float
    step: float | None = Field(default=None, gt=0)
    sampling: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.sampling == "log" and self.min <= 0:
            raise ValueError("log sampling needs min > 0")
        return self


class Choice(_Strict):
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


class Fixed(_Strict):
    type: Literal["fixed"] = "fixed"
    value: Scalar


HyperParameterSpec = Annotated[IntRange | FloatRange | Choice | Fixed, Field(discriminator="type")]


def _shorthand_spec(raw: Any) -> Any:
    """A YAML list means a choice and a bare scalar means a fixed value."""
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


class Objective(_Strict):
    name: str = "val_accuracy"
    direction: Literal["max", "min"] = "max"


class SearchConfig(_Strict):
    family: Family = "mlp"
    algorithm: Algorithm = "bayesian"
    max_trials: PositiveInt = 10
    epochs: PositiveInt = Field(default=10, description="epochs per trial (hyperband: max epochs)")
    executions_per_trial: PositiveInt = 1
    early_stopping_patience: NonNegativeInt = Field(
        default=3, description="in-trial early stopping on the objective; 0 turns it off"
    )
    objective: Objective = Objective()
    train_samples: PositiveInt | None = Field(
        default=None, description="train trials on a stratified subset of this size (cheaper trials)"
    )
    hyperparameters: dict[str, HyperParameterSpec] = Field(
        default_factory=dict, description="overrides of the family's default ranges"
    )
    hyperband_factor: int = Field(default=3, ge=2)

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _expand_shorthand(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {name: _shorthand_spec(spec) for name, spec in raw.items()}
        return raw


class MedianStopping(_Strict):
    """Katib's medianstop: stop a trial whose best objective so far is worse than the median of the
    completed trials' running averages at the same epoch."""

    enabled: bool = False
    min_trials: PositiveInt = Field(default=3, description="completed trials needed before it stops any")
    start_step: NonNegativeInt = Field(default=1, description="first epoch (0-based) at which it may stop a trial")


class FaultTolerance(_Strict):
    heartbeat_seconds: float = Field(default=5.0, gt=0, description="how often a worker says it is alive")
    lease_seconds: float = Field(
        default=60.0, gt=0, description="a worker silent this long loses its trial to the queue"
    )
    coordinator_timeout_seconds: float = Field(
        default=300.0, gt=0, description="a worker gives up after the coordinator is unreachable this long"
    )
    max_retries_per_trial: NonNegativeInt = Field(default=1, description="re-runs of a trial that raised")
    max_consecutive_failures: PositiveInt = Field(default=3, description="failed trials in a row that stop the search")
    median_stopping: MedianStopping = MedianStopping()

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> FaultTolerance:
        if self.lease_seconds < 3 * self.heartbeat_seconds:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be at least 3 heartbeats ({3 * self.heartbeat_seconds:g})"
            )
        return self


class RetrainConfig(_Strict):
    enabled: bool = True
    max_epochs: PositiveInt = 40
    patience: NonNegativeInt = 3
    holdout_fraction: float = Field(
        default=0.05, gt=0, lt=0.5, description="slice of train+val kept aside for early stopping"
    )
    reduce_lr_patience: NonNegativeInt = Field(
        default=2, description="halve the learning rate after this many flat epochs; 0 turns it off"
    )
    augment: list[Literal["flip", "shift"]] = Field(
        default=[],
        description="random changes to the retraining images: 'flip' (left-right, for mirror-symmetric "
        "classes such as clothes, not digits) and 'shift' (up to 2 pixels each way)",
    )


class ExperimentConfig(_Strict):
    name: str = Field(default="fmtune", pattern=r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$")
    dataset: str = Field(
        default="fashion_mnist",
        pattern=r"^[a-z0-9_]+$",
        description="fashion_mnist, mnist, or a dataset declared by a dataset.json in data_dir",
    )
    data_dir: Path | None = None
    download: bool = Field(default=True, description="download the dataset as Keras does if absent")
    seed: int = 42
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    search: SearchConfig = SearchConfig()
    retrain: RetrainConfig = RetrainConfig()
    fault_tolerance: FaultTolerance = FaultTolerance()
    workdir: Path = Path("runs")
    model_repo: Path = Path("models")
    model_name: str = Field(default="fmtune", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _search_fits_family(self) -> ExperimentConfig:
        from fmtune.search_spaces import check_overrides

        problems = check_overrides(self.search.family, self.search.hyperparameters)
        if self.search.algorithm == "grid":
            problems += _grid_problems(self.search)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def experiment_dir(self) -> Path:
        return self.workdir / self.name

    def digest(self) -> str:
        """A short hash of the settings that define the experiment."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _grid_problems(search: SearchConfig) -> list[str]:
    from fmtune.search_spaces import resolved_specs

    return [
        f"search.algorithm: grid search needs a finite value set for '{name}' (use a list, a fixed value, or a step)"
        for name, spec in resolved_specs(search.family, search.hyperparameters).items()
        if not is_finite(spec)
    ]


def preset(name: str) -> dict[str, Any]:
    """The raw mapping of a built-in preset."""
    if name not in PRESETS:
        raise ConfigError([f"preset: unknown preset '{name}' (choose from {', '.join(PRESETS)})"])
    text = resources.files("fmtune.presets").joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text) or {}


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key != "hyperparameters":
            out[key] = _merge(out[key], value)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError([f"{dotted}: '{part}' is not a section"])
        node = child
    node[leaf] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``search.max_trials=5`` -> ("search.max_trials", 5); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"--set {text}: expected KEY=VALUE, e.g. search.max_trials=5"])
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``FMTUNE_SEARCH__MAX_TRIALS=5`` and ``FMTUNE_DATA_DIR=...`` become config overrides."""
    out: dict[str, Any] = {}
    top_level = set(ExperimentConfig.model_fields)
    for var, raw in sorted(environ.items()):
        if not var.startswith(ENV_PREFIX):
            continue
        path = var[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in top_level:
            continue
        _set_path(out, ".".join(path), yaml.safe_load(raw) if raw else "")
    return out


_UNION_TAGS = {"int", "float", "choice", "fixed"}


def validate(raw: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a raw mapping, turning pydantic's errors into one line per bad field."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"] if p not in _UNION_TAGS)
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            for message in err["msg"].removeprefix("Value error, ").splitlines():
                problems.append(f"{where}: {message}{got}" if where else message)
        raise ConfigError(problems) from None


def load(
    preset_name: str | None = "quick",
    file: Path | None = None,
    assignments: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ExperimentConfig:
    """Build the experiment from a preset, a YAML file, the environment and ``--set`` overrides."""
    raw: dict[str, Any] = preset(preset_name) if preset_name else {}
    if file is not None:
        try:
            loaded = yaml.safe_load(Path(file).read_text())
        except OSError as exc:
            raise ConfigError([f"config file {file}: {exc.strerror or exc}"]) from None
        except yaml.YAMLError as exc:
            raise ConfigError([f"config file {file}: not valid YAML ({exc})"]) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([f"config file {file}: expected a mapping at the top level"])
        raw = _merge(raw, loaded or {})
    raw = _merge(raw, env_overrides(os.environ if environ is None else environ))
    for text in assignments or []:
        key, value = parse_assignment(text)
        _set_path(raw, key, value)
    return validate(raw)
