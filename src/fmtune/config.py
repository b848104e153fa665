"""Experiment configuration: pydantic models, presets, and layered overrides.

Precedence, lowest first: preset -> YAML file -> environment (``FMTUNE_*``) -> CLI ``--set`` ->
dedicated CLI flags. The process that starts the others resolves the layers once, validates, and
writes the result; its children load exactly that file (``load_resolved``), so no layer can be
read twice or differently. A bad value stops the run before any process starts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, NonNegativeInt, PositiveInt, ValidationError, field_validator, model_validator

from fmtune import spaces
from fmtune.spaces import SPEC_TAGS, Family, HyperParameterSpec
from fmtune.spaces import Strict as _Strict

if TYPE_CHECKING:
    from fmtune.data import Dataset

Algorithm = Literal["bayesian", "random", "hyperband", "grid"]
PRESETS = ("quick", "standard", "mnist")
ENV_PREFIX = "FMTUNE_"


class ConfigError(ValueError):
    """A configuration that cannot run; ``problems`` holds one message per bad field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class Objective(_Strict):
    name: str = "val_accuracy"
    direction: Literal["max", "min"] = "max"


class AshaConfig(_Strict):
    """Asynchronous successive halving (Li et al., "A System for Massively Parallel Hyperparameter
    Tuning", MLSys 2020): a trial goes on past rung k (epoch ``grace_epochs * reduction_factor**k``)
    only if it is in the top ``1/reduction_factor`` of the trials that reached that rung so far."""

    enabled: bool = False
    reduction_factor: int = Field(default=3, ge=2, description="eta: one in this many trials goes on at each rung")
    grace_epochs: PositiveInt = Field(default=1, description="the first rung: epochs every trial gets")


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
    asha: AshaConfig = AshaConfig()

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _expand_shorthand(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {name: spaces.shorthand_spec(spec) for name, spec in raw.items()}
        return raw


class MedianStoppingConfig(_Strict):
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
    worker_wait_seconds: float = Field(
        default=900.0,
        gt=0,
        description="the coordinator stops the search with an error when no worker has called for this long "
        "while no trial is running and trials remain",
    )
    median_stopping: MedianStoppingConfig = MedianStoppingConfig()

    @model_validator(mode="after")
    def _lease_outlives_heartbeats(self) -> FaultTolerance:
        if self.lease_seconds < 3 * self.heartbeat_seconds:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be at least 3 heartbeats ({3 * self.heartbeat_seconds:g})"
            )
        return self


class RetrainConfig(_Strict):
    enabled: bool = True
    schedule: Literal["plateau", "cosine"] = Field(
        default="plateau",
        description="plateau: early stopping on a holdout, halving the learning rate on plateaus; "
        "cosine: a warm-up then a cosine decay to zero over the epochs (as many as the budget leaves)",
    )
    max_epochs: PositiveInt = 40
    patience: NonNegativeInt = 3
    holdout_fraction: float = Field(
        default=0.05, ge=0, lt=0.5, description="slice of train+val kept aside (early stopping needs one)"
    )
    reduce_lr_patience: NonNegativeInt = Field(
        default=2, description="halve the learning rate after this many flat epochs; 0 turns it off"
    )
    warmup_epochs: float = Field(default=1.0, ge=0, description="cosine: epochs of linear warm-up")
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    augment: list[Literal["flip", "shift", "erase"]] = Field(
        default=[],
        description="random changes to the retraining images: 'flip' (left-right, for mirror-symmetric "
        "classes such as clothes, not digits), 'shift' (up to 2 pixels each way), 'erase' (a random "
        "rectangle blanked)",
    )
    test_time_flip: bool = Field(
        default=False, description="the exported model averages its predictions for the image and its mirror"
    )
    budget_share: float = Field(
        default=0.5, gt=0, lt=1, description="with a budget: at least this share is kept for retraining and export"
    )
    min_epochs: PositiveInt = Field(
        default=5, description="with a budget: the search leaves time for at least this many retraining epochs"
    )

    @model_validator(mode="after")
    def _holdout_for_early_stopping(self) -> RetrainConfig:
        if self.schedule == "plateau" and (self.patience or self.reduce_lr_patience) and not self.holdout_fraction:
            raise ValueError("holdout_fraction must be > 0: the plateau schedule watches a holdout")
        return self


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
    budget_minutes: float | None = Field(
        default=None,
        gt=0,
        description="wall time for the whole pipeline (search, retraining, export); None: max_trials decides",
    )
    search: SearchConfig = SearchConfig()
    retrain: RetrainConfig = RetrainConfig()
    fault_tolerance: FaultTolerance = FaultTolerance()
    workdir: Path = Path("runs")
    model_repo: Path = Path("models")
    model_name: str = Field(default="fmtune", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _search_fits_family(self) -> ExperimentConfig:
        from fmtune.data import DatasetError, resolve_spec

        problems = spaces.check_overrides(self.search.family, self.search.hyperparameters)
        try:
            resolve_spec(self.dataset, self.data_dir)
        except DatasetError as exc:
            problems.append(f"dataset: {exc}")
        if self.search.algorithm == "grid":
            problems += _grid_problems(self.search)
        if self.search.asha.enabled and self.fault_tolerance.median_stopping.enabled:
            problems.append("search.asha: choose one early-stopping rule, ASHA or median stopping, not both")
        if self.search.asha.enabled and self.search.algorithm == "hyperband":
            problems.append("search.asha: Hyperband schedules its own brackets; use random or bayesian with ASHA")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def experiment_dir(self) -> Path:
        return self.workdir / self.name

    def load_dataset(self) -> Dataset:
        """The experiment's dataset, with its fixed-seed validation split."""
        from fmtune import data

        return data.load(
            self.dataset, self.data_dir, val_fraction=self.val_fraction, seed=self.seed, download=self.download
        )

    def digest(self) -> str:
        """A short hash of the settings that define the experiment."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _grid_problems(search: SearchConfig) -> list[str]:
    return [
        f"search.algorithm: grid search needs a finite value set for '{name}' (use a list, a fixed value, or a step)"
        for name, spec in spaces.resolved_specs(search.family, search.hyperparameters).items()
        if not spaces.is_finite(spec)
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


def set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = target
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError([f"{dotted}: '{part}' is not a section"])
        node = child
    node[leaf] = value


def _yaml_value(where: str, raw: str) -> Any:
    """A value typed on a command line or in the environment, read as YAML (``5`` is a number)."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError([f"{where}: '{raw}' is not a valid YAML value"]) from None


def parse_assignment(text: str) -> tuple[str, Any]:
    """``search.max_trials=5`` -> ("search.max_trials", 5); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"--set {text}: expected KEY=VALUE, e.g. search.max_trials=5"])
    return key.strip(), _yaml_value(f"--set {key.strip()}", raw)


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
        set_path(out, ".".join(path), _yaml_value(var, raw))
    return out


def validate(raw: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a raw mapping, turning pydantic's errors into one line per bad field."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"] if p not in SPEC_TAGS)
            got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
            for message in err["msg"].removeprefix("Value error, ").splitlines():
                problems.append(f"{where}: {message}{got}" if where else message)
        raise ConfigError(problems) from None


def read_file(file: Path) -> dict[str, Any]:
    """A config file's mapping; anything that is not a readable YAML mapping is a ConfigError."""
    try:
        loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"config file {file}: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError([f"config file {file}: {exc.strerror or exc}"]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError([f"config file {file}: not valid YAML ({exc})"]) from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError([f"config file {file}: expected a mapping at the top level"])
    return loaded or {}


def load(
    preset_name: str | None = "quick",
    file: Path | None = None,
    assignments: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Build the experiment from its layers, lowest first: a preset, a YAML file, the environment,
    ``--set KEY=VALUE`` assignments (read as YAML), then dedicated flags (typed values by dotted
    key; None means the flag was not given)."""
    raw: dict[str, Any] = preset(preset_name) if preset_name else {}
    if file is not None:
        raw = _merge(raw, read_file(file))
    raw = _merge(raw, env_overrides(os.environ if environ is None else environ))
    for text in assignments or []:
        set_path(raw, *parse_assignment(text))
    for key, value in (flags or {}).items():
        if value is not None:
            set_path(raw, key, value)
    return validate(raw)


def load_resolved(file: Path) -> ExperimentConfig:
    """A config that the starting process resolved and wrote: read exactly, with no preset and no
    environment, so that every process of one experiment runs the same one."""
    return validate(read_file(file))
