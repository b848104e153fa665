"""The Keras Tuner pieces: an oracle that keeps a record and logs, and a tuner that reports each epoch.

The same ``FmtuneTuner`` runs on the coordinator (which only uses its oracle) and on every worker
(whose oracle Keras Tuner swaps for a gRPC client of the coordinator's).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import keras_tuner as kt
from keras_tuner.src import protos
from keras_tuner.src.engine import conditions, metrics_tracking
from keras_tuner.src.engine import trial as trial_module

from fmtune.config import ExperimentConfig
from fmtune.report import format_metrics, format_values
from fmtune.search_spaces import hypermodel

log = logging.getLogger("fmtune")
# Type checkers see the mixin as an Oracle; at run time it is mixed into the chosen oracle class.
_OracleBase: type = kt.Oracle if TYPE_CHECKING else object
PROJECT = "search"
ORACLE_CLASSES: dict[str, type[kt.Oracle]] = {
    "bayesian": kt.oracles.BayesianOptimizationOracle,
    "random": kt.oracles.RandomSearchOracle,
    "hyperband": kt.oracles.HyperbandOracle,
    "grid": kt.oracles.GridSearchOracle,
}


def _parent_to_proto(self: conditions.Parent) -> Any:
    """keras-tuner 1.4.8's ``Parent.to_proto`` prints a debug line on every call; same code, silent."""
    first = self.values[0]
    kind = (
        "string_value"
        if isinstance(first, str)
        else "boolean_value"
        if isinstance(first, bool)
        else "int_value"
        if isinstance(first, int)
        else "float_value"
    )
    proto = protos.get_proto()
    values = [proto.Value(**{kind: v}) for v in self.values]
    return proto.Condition(parent=proto.Condition.Parent(name=self.name, values=values))


conditions.Parent.to_proto = _parent_to_proto


def active_values(hp: kt.HyperParameters) -> dict[str, Any]:
    """Only the values that shaped the model (inactive conditional ones are left out)."""
    return {hp_.name: hp.values[hp_.name] for hp_ in hp.space if hp.is_active(hp_) and hp_.name in hp.values} | {
        k: v for k, v in hp.values.items() if k.startswith("tuner/")
    }


class RecordingOracle(_OracleBase):
    """Mixin for a Keras Tuner oracle: who ran each trial, when, and a log line per finished trial.

    The record is part of the oracle's saved state, so it survives a coordinator restart.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.record: dict[str, dict[str, Any]] = {}

    @kt.synchronized
    def create_trial(self, tuner_id: str) -> Any:
        held = self.ongoing_trials.get(tuner_id)
        if held is not None:
            # A worker asking again while holding a trial has restarted: it re-runs the trial from
            # scratch, so the epochs it reported before the restart no longer count.
            held.metrics = metrics_tracking.MetricsTracker()
            log.info("%s came back: it re-runs trial %s from the start", tuner_id, held.trial_id)
        trial = super().create_trial(tuner_id)
        if trial.status == trial_module.TrialStatus.RUNNING:
            self.record.setdefault(trial.trial_id, {}).update(worker=tuner_id, started=time.time(), ended=None)
            values = format_values(active_values(trial.hyperparameters))
            log.info("trial %s started on %s: %s", trial.trial_id, tuner_id, values)
        return trial

    @kt.synchronized
    def end_trial(self, trial: Any) -> None:
        entry = self.record.setdefault(trial.trial_id, {})
        entry["ended"] = time.time()
        super().end_trial(trial)
        stored = self.trials[trial.trial_id]
        finished = sum(t.status in ("COMPLETED", "FAILED", "STOPPED") for t in self.trials.values())
        best = self.get_best_trials(1)
        best_text = f"{best[0].score:.4f}" if best and best[0].score is not None else "n/a"
        seconds = entry["ended"] - entry.get("started", entry["ended"])
        where = f"[trial {trial.trial_id} on {entry.get('worker')}, {seconds:.0f}s]"
        progress = f"trial {finished}/{self.max_trials or '?'}"
        if stored.status == "COMPLETED":
            log.info("%s done: %s=%.4f (best %s) %s", progress, self.objective.name, stored.score, best_text, where)
        else:
            reason = (stored.message or "").strip().splitlines()[-1:] or [""]
            log.info("%s %s: %s (best %s) %s", progress, stored.status.lower(), reason[0], best_text, where)

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "fmtune_record": self.record}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.record = state.get("fmtune_record", {})


def make_oracle(cfg: ExperimentConfig) -> kt.Oracle:
    search = cfg.search
    base = ORACLE_CLASSES[search.algorithm]
    cls = type(f"Recording{base.__name__}", (RecordingOracle, base), {})
    kwargs: dict[str, Any] = {
        "objective": kt.Objective(search.objective.name, search.objective.direction),
        "seed": cfg.seed,
    }
    if search.algorithm == "hyperband":
        kwargs.update(max_epochs=search.epochs, factor=search.hyperband_factor)
    else:
        kwargs["max_trials"] = search.max_trials
    oracle = cls(**kwargs)
    oracle.max_trials = search.max_trials  # hyperband: a cap on top of its own schedule
    return oracle


class FmtuneTuner(kt.Tuner):
    """Reports every epoch to the oracle (so the coordinator sees progress) and logs it."""

    def __init__(self, cfg: ExperimentConfig, directory: Path, checkpoint_root: Path | None = None):
        self.cfg = cfg
        self.checkpoint_root = checkpoint_root
        self._epoch_started = 0.0
        self._trial_started = 0.0
        super().__init__(
            oracle=make_oracle(cfg),
            hypermodel=hypermodel(cfg.search.family, cfg.search.hyperparameters),
            directory=str(directory),
            project_name=PROJECT,
            overwrite=False,
            executions_per_trial=cfg.search.executions_per_trial,
        )

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        values = trial.hyperparameters.values
        if "tuner/epochs" in values:  # hyperband brackets resume from an earlier trial's weights
            kwargs["epochs"] = values["tuner/epochs"]
            kwargs["initial_epoch"] = values["tuner/initial_epoch"] if self._parent_checkpoint(values) else 0
        return super().run_trial(trial, *args, **kwargs)

    def _parent_checkpoint(self, values: dict[str, Any]) -> Path | None:
        """The weights of the trial a hyperband trial continues, from any worker's directory."""
        parent = values.get("tuner/trial_id")
        if not parent or self.checkpoint_root is None:
            return None
        found = sorted(self.checkpoint_root.glob(f"*/{PROJECT}/trial_{parent}/checkpoint.weights.h5"))
        return found[0] if found else None

    def _build_hypermodel(self, hp: Any) -> Any:
        model = super()._build_hypermodel(hp)
        parent = self._parent_checkpoint(hp.values)
        if parent is not None:
            model.load_weights(str(parent))
        return model

    def _run_and_update_trial(self, trial: Any, *fit_args: Any, **fit_kwargs: Any) -> None:
        # Metrics already reached the oracle epoch by epoch (see on_epoch_end).
        self.run_trial(trial, *fit_args, **fit_kwargs)
        if not self.oracle.get_trial(trial.trial_id).metrics.exists(self.oracle.objective.name):
            raise kt.errors.FailedTrialError(f"trial {trial.trial_id} never reported {self.oracle.objective.name}")

    def on_trial_begin(self, trial: Any) -> None:
        self._trial_started = time.monotonic()
        log.info("trial %s start: %s", trial.trial_id, format_values(active_values(trial.hyperparameters)))

    def on_epoch_begin(self, trial: Any, model: Any, epoch: int, logs: Any = None) -> None:
        self._epoch_started = time.monotonic()

    def on_epoch_end(self, trial: Any, model: Any, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        status = self.oracle.update_trial(trial.trial_id, metrics, step=epoch)
        seconds = time.monotonic() - self._epoch_started
        log.info(
            "trial %s epoch %d/%s: %s (%.1fs)",
            trial.trial_id,
            epoch + 1,
            self._epochs(trial),
            format_metrics(metrics),
            seconds,
        )
        if getattr(status, "status", None) == trial_module.TrialStatus.STOPPED:
            log.info("trial %s stopped early by the coordinator", trial.trial_id)
            model.stop_training = True

    def _epochs(self, trial: Any) -> int:
        return int(trial.hyperparameters.values.get("tuner/epochs", self.cfg.search.epochs))

    def on_trial_end(self, trial: Any) -> None:
        seconds = time.monotonic() - self._trial_started
        name = self.oracle.objective.name
        reported = self.oracle.get_trial(trial.trial_id).metrics
        best = reported.get_best_value(name) if reported.exists(name) else None
        outcome = f"best {name}={best:.4f}" if best is not None else (trial.message or "").strip().splitlines()[-1:]
        log.info("trial %s end: %s %s (%.1fs)", trial.trial_id, trial.status, outcome, seconds)
        super().on_trial_end(trial)


def fit_callbacks(cfg: ExperimentConfig) -> list[keras.callbacks.Callback]:
    """In-trial early stopping on the objective."""
    patience = cfg.search.early_stopping_patience
    if not patience:
        return []
    objective = cfg.search.objective
    return [keras.callbacks.EarlyStopping(monitor=objective.name, mode=objective.direction, patience=patience)]
