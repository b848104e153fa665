"""The experiment config's sections: the search, early stopping, fault tolerance and retraining.
``fmtune.config`` puts them together into the experiment and resolves its layers."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from fmtune import spaces
from fmtune.spaces import Family, HyperParameterSpec
from fmtune.spaces import Strict as _Strict

Algorithm = Literal["bayesian", "random", "hyperband", "grid"]
Precision = Literal["float32", "mixed_bfloat16", "auto"]
PICKLED = "pickle:"  # a hypermodel pickled by fmtune.tune() from a notebook: pickle:<path>


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
    family: Family = Field(default="mlp", description="a built-in model family, unless hypermodel names your own")
    hypermodel: str | None = Field(
        default=None,
        description="your model: 'package.module:attr' or 'path/to/file.py:attr', a build_model(hp) function "
        "or a keras_tuner.HyperModel (class or instance); unset: the built-in family",
    )
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
    precision: Precision = Field(
        default="float32",
        description="the built-in families' arithmetic in trials and retraining: mixed_bfloat16 computes in "
        "bfloat16 with float32 weights; auto: mixed_bfloat16 on CPUs with native bfloat16 (AVX512-BF16, AMX), "
        "else float32. The exported model computes in float32. Your hypermodel sets its own (a Keras dtype policy)",
    )

    @property
    def model(self) -> str:
        """What the search tunes, for records and logs: the user's hypermodel (a notebook's by its
        own name, not its pickle's path), else the family."""
        if self.hypermodel is None:
            return self.family
        if self.hypermodel.startswith(PICKLED):  # <experiment dir>/<name>-<content hash>.pkl
            return f"{PurePath(self.hypermodel).stem.rpartition('-')[0] or 'hypermodel'} (from a notebook)"
        return self.hypermodel

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
    warm_start: bool = Field(
        default=False,
        description="start from the best trial's saved weights (its best epoch) instead of from scratch, "
        "where its worker left them on the shared volume; from scratch otherwise",
    )

    @model_validator(mode="after")
    def _holdout_for_early_stopping(self) -> RetrainConfig:
        if self.schedule == "plateau" and (self.patience or self.reduce_lr_patience) and not self.holdout_fraction:
            raise ValueError("holdout_fraction must be > 0: the plateau schedule watches a holdout")
        return self


class TrackingConfig(_Strict):
    """Experiment tracking: the coordinator mirrors the run into MLflow (the ``fmtune[mlflow]``
    extra), one run per trial nested under one run for the experiment. What it watches is the
    run's own record (state.json, results.json), from a thread of its own: a slow or unreachable
    tracking server never holds up the search. Left out of the config's digests, since it
    observes the experiment and changes nothing of it."""

    mlflow_uri: str | None = Field(
        default=None,
        min_length=1,
        description="the MLflow tracking server, e.g. http://mlflow:5000; unset: MLFLOW_TRACKING_URI "
        "if set, else no tracking",
    )
    experiment: str | None = Field(
        default=None, min_length=1, description="the MLflow experiment; unset: this experiment's name"
    )
    sync_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="how often new epochs and ended trials are sent"
    )
