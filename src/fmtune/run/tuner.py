"""The tuner that reports each epoch, and the oracle it is built with.

The same ``FmtuneTuner`` runs on the coordinator (which only uses its oracle) and on every worker
(whose oracle Keras Tuner swaps for a gRPC client of the coordinator's).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from fmtune import layout, logs
from fmtune.config import ExperimentConfig
from fmtune.data import Dataset
from fmtune.layout import ExperimentDir
from fmtune.models import plugins
from fmtune.text import format_metrics, format_values, last_line
from fmtune.tuning import auth
from fmtune.tuning.algorithms import make_oracle
from fmtune.tuning.kt_internals import Status, TunerHooks, remote_oracle
from fmtune.tuning.oracle import active_values
from fmtune.tuning.oracle_client import Client

log = logging.getLogger("fmtune")


class FmtuneTuner(TunerHooks):
    """Reports every epoch to the oracle (so the coordinator sees progress) and logs it."""

    def __init__(self, cfg: ExperimentConfig, dataset: Dataset, directory: Path, checkpoints: bool = False):
        """``checkpoints``: a worker, which continues a Hyperband trial from another's weights."""
        self.cfg = cfg
        self.experiment = ExperimentDir(cfg.experiment_dir) if checkpoints else None
        self._epoch_started = 0.0
        self._trial_started = 0.0
        super().__init__(
            oracle=make_oracle(cfg.search, cfg.fault_tolerance, cfg.seed),
            hypermodel=plugins.for_search(cfg.search, dataset.input_shape, dataset.num_classes),
            directory=str(directory),
            project_name=layout.PROJECT,
            overwrite=False,
            executions_per_trial=cfg.search.executions_per_trial,
        )
        local = remote_oracle(self)
        if local is not None:  # a worker: our client, with its id and timeouts
            self.oracle = Client(
                local,
                self.tuner_id,
                cfg.fault_tolerance.coordinator_timeout_seconds,
                token=lambda: auth.credential(self.tuner_id, cfg.experiment_dir),
            )
        self._lost = threading.Event()
        self._trial_done = threading.Event()

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        # A trial's weights and shuffles follow from the experiment's seed and the trial alone, so
        # the same trial trains the same way on any worker and in any order.
        keras.utils.set_random_seed((self.cfg.seed * 1_000_003 + zlib.crc32(trial.trial_id.encode())) % 2**31)
        values = trial.hyperparameters.values
        if "tuner/epochs" in values:  # hyperband brackets resume from an earlier trial's weights
            kwargs["epochs"] = values["tuner/epochs"]
            kwargs["initial_epoch"] = values["tuner/initial_epoch"] if self._parent_checkpoint(values) else 0
        return super().run_trial(trial, *args, **kwargs)

    def _parent_checkpoint(self, values: dict[str, Any]) -> Path | None:
        """The weights of the trial a hyperband trial continues, from any worker's directory."""
        parent = values.get("tuner/trial_id")
        if not parent or self.experiment is None:
            return None
        found = self.experiment.checkpoints(parent)
        return found[0] if found else None

    def build_model(self, hp: Any) -> Any:
        model = super().build_model(hp)
        parent = self._parent_checkpoint(hp.values)
        if parent is not None:
            model.load_weights(str(parent))
        return model

    def run_and_report(self, trial: Any, *fit_args: Any, **fit_kwargs: Any) -> None:
        # Metrics already reached the oracle epoch by epoch (see on_epoch_end).
        self.run_trial(trial, *fit_args, **fit_kwargs)
        if not self.oracle.get_trial(trial.trial_id).metrics.exists(self.oracle.objective.name):
            raise kt.errors.FailedTrialError(f"trial {trial.trial_id} never reported {self.oracle.objective.name}")

    def on_trial_begin(self, trial: Any) -> None:
        self._trial_started = time.monotonic()
        logs.bind(trial_id=trial.trial_id)  # one trial at a time: every line until its end is about it
        log.info("trial %s start: %s", trial.trial_id, format_values(active_values(trial.hyperparameters)))
        self._lost.clear()
        self._trial_done.clear()
        if isinstance(self.oracle, Client):
            threading.Thread(target=self._heartbeat, args=(trial.trial_id,), name="heartbeat", daemon=True).start()

    def _heartbeat(self, trial_id: str) -> None:
        """Keep the lease on this trial however long an epoch takes; notice if it was lost."""
        while not self._trial_done.wait(self.cfg.fault_tolerance.heartbeat_seconds):
            try:
                answer = self.oracle.get_trial(trial_id)
            except Exception as exc:  # the next report fails loudly; a heartbeat only notes it
                log.warning("heartbeat for trial %s failed: %s", trial_id, exc)
                continue
            if answer.status == Status.STOPPED:
                log.warning("trial %s is no longer ours (lease lost or search over): stopping it", trial_id)
                self._lost.set()
                return

    def on_batch_end(self, trial: Any, model: Any, batch: int, logs: Any = None) -> None:
        if self._lost.is_set():
            model.stop_training = True

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
            extra={"epoch": epoch + 1, "metrics": metrics, "seconds": round(seconds, 3)},
        )
        if getattr(status, "status", None) == Status.STOPPED:
            log.info("trial %s stopped early by the coordinator", trial.trial_id)
            model.stop_training = True

    def _epochs(self, trial: Any) -> int:
        return int(trial.hyperparameters.values.get("tuner/epochs", self.cfg.search.epochs))

    def on_trial_end(self, trial: Any) -> None:
        seconds = time.monotonic() - self._trial_started
        name = self.oracle.objective.name
        reported = self.oracle.get_trial(trial.trial_id).metrics
        best = reported.get_best_value(name) if reported.exists(name) else None
        outcome = f"best {name}={best:.4f}" if best is not None else last_line(trial.message)
        log.info(
            "trial %s end: %s %s (%.1fs)",
            trial.trial_id,
            trial.status,
            outcome,
            seconds,
            extra={"status": str(trial.status), "best": best, "seconds": round(seconds, 3)},
        )
        logs.bind(trial_id=None)
        self._trial_done.set()
        super().on_trial_end(trial)


def tensorboard_dir(cfg: ExperimentConfig) -> Path:
    return ExperimentDir(cfg.experiment_dir).tensorboard


def fit_callbacks(cfg: ExperimentConfig) -> list[keras.callbacks.Callback]:
    """TensorBoard logs (Keras Tuner points them at <dir>/<trial>/execution<N> and adds the trial's
    hyperparameters, so the HParams dashboard works) and in-trial early stopping on the objective."""
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.TensorBoard(
            log_dir=str(tensorboard_dir(cfg)), histogram_freq=0, write_graph=False, profile_batch=0
        )
    ]
    if cfg.search.early_stopping_patience:
        objective = cfg.search.objective
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=objective.name, mode=objective.direction, patience=cfg.search.early_stopping_patience
            )
        )
    return callbacks
