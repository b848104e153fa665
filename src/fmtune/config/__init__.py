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
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import Field, ValidationError, model_validator

from fmtune import spaces
from fmtune.config.sections import (
    AshaConfig,
    FaultTolerance,
    MedianStoppingConfig,
    Objective,
    RetrainConfig,
    SearchConfig,
    TrackingConfig,
)
from fmtune.data.source import DataSourceConfig
from fmtune.spaces import SPEC_TAGS
from fmtune.spaces import Strict as _Strict

__all__ = [
    "AshaConfig",
    "ConfigError",
    "ExperimentConfig",
    "FaultTolerance",
    "MedianStoppingConfig",
    "Objective",
    "RetrainConfig",
    "SearchConfig",
    "TrackingConfig",
]

if TYPE_CHECKING:
    from fmtune.data import Dataset

PRESETS = ("quick", "standard", "mnist")
ENV_PREFIX = "FMTUNE_"
FAMILY_ONLY = ("hyperparameters", "precision")  # search settings of the built-in families alone


class ConfigError(ValueError):
    """A configuration that cannot run; ``problems`` holds one message per bad field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class ExperimentConfig(_Strict):
    name: str = Field(default="fmtune", pattern=r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$")
    dataset: str = Field(
        default="fashion_mnist",
        pattern=r"^[a-z0-9_]+$",
        description="fashion_mnist, mnist, or a dataset declared by a dataset.json in data_dir",
    )
    data_dir: Path | None = None
    data: DataSourceConfig | None = Field(
        default=None,
        description="where the images come from (kind: folder, npz, loader or idx); unset: 'dataset' in data_dir",
    )
    download: bool = Field(default=True, description="download the dataset as Keras does if absent")
    seed: int = Field(
        default=42,
        ge=0,
        description="the run's random seed; set in no layer, `fmtune tune` draws one for each new experiment "
        "and keeps it for its resumes",
    )
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    budget_minutes: float | None = Field(
        default=None,
        gt=0,
        description="wall time for the whole pipeline (search, retraining, export); None: max_trials decides",
    )
    search: SearchConfig = SearchConfig()
    retrain: RetrainConfig = RetrainConfig()
    fault_tolerance: FaultTolerance = FaultTolerance()
    tracking: TrackingConfig = TrackingConfig()
    workdir: Path = Path("runs")
    model_repo: Path = Path("models")
    model_name: str = Field(default="fmtune", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

    @model_validator(mode="after")
    def _search_fits_family(self) -> ExperimentConfig:
        from fmtune.data import DatasetError, check_source, resolve_spec

        problems = []
        if self.search.hypermodel is None:
            problems += spaces.check_overrides(self.search.family, self.search.hyperparameters)
        else:
            if self.search.hyperparameters:
                problems.append(
                    "search.hyperparameters: only for the built-in families (your hypermodel declares its own)"
                )
            if self.search.precision != "float32":
                problems.append("search.precision: only for the built-in families (your model sets its dtype policy)")
        try:
            if self.data is None:
                resolve_spec(self.dataset, self.data_dir)
            else:
                check_source(self.data)
        except DatasetError as exc:
            problems.append(f"{'data' if self.data else 'dataset'}: {exc}")
        if self.search.algorithm == "grid" and self.search.hypermodel is None:  # a plugin's space is its own
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

    @property
    def dataset_name(self) -> str:
        """The dataset's name for logs, records and model cards."""
        return self.data.display_name() if self.data is not None else self.dataset

    def load_dataset(self) -> Dataset:
        """The experiment's dataset, with its fixed-seed validation split."""
        from fmtune import data

        if self.data is not None:
            return data.load_source(self.data, self.seed)
        return data.load(
            self.dataset, self.data_dir, val_fraction=self.val_fraction, seed=self.seed, download=self.download
        )

    def digest(self) -> str:
        """A short hash of the settings that define the experiment (tracking only watches it)."""
        return _hash(self.model_dump(mode="json", exclude={"tracking"}))

    def outcome_digest(self) -> str:
        """A short hash of the settings that decide what the experiment produces: how it copes with
        faults (waits, leases, retries) is left out, so that changing only that does not retrain."""
        return _hash(self.model_dump(mode="json", exclude={"fault_tolerance", "tracking"}))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _hash(dump: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:16]


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
    seed: Callable[[ExperimentConfig], int] | None = None,
) -> ExperimentConfig:
    """Build the experiment from its layers, lowest first: a preset, a YAML file, the environment,
    ``--set KEY=VALUE`` assignments (read as YAML), then dedicated flags (typed values by dotted
    key; None means the flag was not given). When no layer sets the seed, ``seed`` gives it from
    the experiment (``run.experiment.seed_for``: a resumed run's own, else a new one); without it,
    the default.

    A preset's ``search.hyperparameters`` narrow its built-in family's space, and its
    ``search.precision`` sets the family's arithmetic; with the user's own ``search.hypermodel``
    from a later layer both are left out (the hypermodel declares its own)."""
    raw: dict[str, Any] = {}
    if file is not None:
        raw = read_file(file)
    raw = _merge(raw, env_overrides(os.environ if environ is None else environ))
    for text in assignments or []:
        set_path(raw, *parse_assignment(text))
    for key, value in (flags or {}).items():
        if value is not None:
            set_path(raw, key, value)
    base = preset(preset_name) if preset_name else {}
    search = raw.get("search")
    if isinstance(search, dict) and search.get("hypermodel") and isinstance(base.get("search"), dict):
        base["search"] = {k: v for k, v in base["search"].items() if k not in FAMILY_ONLY}
    merged = _merge(base, raw)
    cfg = validate(merged)
    if seed is not None and "seed" not in merged:
        cfg = cfg.model_copy(update={"seed": seed(cfg)})
    return cfg


def load_resolved(file: Path) -> ExperimentConfig:
    """A config that the starting process resolved and wrote: read exactly, with no preset and no
    environment, so that every process of one experiment runs the same one."""
    return validate(read_file(file))
