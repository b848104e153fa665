"""Retrain the best configuration on train+val, then evaluate once on the test set.

Early stopping needs data the model does not train on, so a small stratified slice of train+val
(``retrain.holdout_fraction``) is kept aside for it; the test set is touched exactly once, at the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from fmtune.config import ExperimentConfig
from fmtune.data import Dataset, Split, stratified_split
from fmtune.report import format_metrics
from fmtune.results import EpochMetrics, RetrainRecord
from fmtune.search_spaces import build_from_values

log = logging.getLogger("fmtune")


class EpochLog(keras.callbacks.Callback):
    """One line per epoch, for terminals and ``kubectl logs``."""

    def __init__(self, label: str, epochs: int):
        super().__init__()
        self.label, self.epochs = label, epochs
        self.history: list[EpochMetrics] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append(EpochMetrics(epoch=epoch, metrics=metrics))
        log.info(
            "%s epoch %d/%d: %s (%.1fs)",
            self.label,
            epoch + 1,
            self.epochs,
            format_metrics(metrics),
            time.monotonic() - self._started,
        )


def merged_train_val(dataset: Dataset) -> Split:
    return Split(
        np.concatenate([dataset.train.images, dataset.val.images]),
        np.concatenate([dataset.train.labels, dataset.val.labels]),
    )


def augmented(split: Split, batch_size: int, kinds: Sequence[str], seed: int) -> Any:
    """A shuffled, batched tf.data pipeline with random flips and/or shifts, as uint8 images
    (the model's input type; nearest-pixel shifts keep the values whole)."""
    import tensorflow as tf

    layers: list[keras.layers.Layer] = []
    if "flip" in kinds:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if "shift" in kinds:
        shift = 2 / 28
        layers.append(
            keras.layers.RandomTranslation(shift, shift, fill_mode="constant", interpolation="nearest", seed=seed)
        )

    def apply(images: Any, labels: Any) -> Any:
        x = tf.cast(images[..., None], tf.float32)
        for layer in layers:
            x = layer(x, training=True)
        return tf.cast(tf.squeeze(x, -1), tf.uint8), labels

    pipeline = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    pipeline = pipeline.shuffle(len(split), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    return pipeline.map(apply, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def retrain(cfg: ExperimentConfig, values: dict[str, Any], dataset: Dataset) -> tuple[keras.Model, RetrainRecord]:
    started = time.monotonic()
    settings = cfg.retrain
    full = merged_train_val(dataset)
    keep, held_out = stratified_split(full.labels, settings.holdout_fraction, cfg.seed + 1)
    fit, holdout = full.subset(keep), full.subset(held_out)

    keras.utils.set_random_seed(cfg.seed)
    model, hp = build_from_values(cfg.search.family, values, cfg.search.hyperparameters)
    objective = cfg.search.objective
    epoch_log = EpochLog("retrain", settings.max_epochs)
    callbacks: list[keras.callbacks.Callback] = [epoch_log]
    if settings.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=objective.name, mode=objective.direction, patience=settings.patience, restore_best_weights=True
            )
        )
    if settings.reduce_lr_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=objective.name,
                mode=objective.direction,
                factor=0.5,
                patience=settings.reduce_lr_patience,
                min_lr=1e-6,
            )
        )
    batch_size = hp.get("batch_size")
    log.info(
        "retrain: %d images (+%d held out for early stopping), up to %d epochs, batch size %s%s",
        len(fit),
        len(holdout),
        settings.max_epochs,
        batch_size,
        f", augmented ({' + '.join(settings.augment)})" if settings.augment else "",
    )
    inputs: dict[str, Any] = (
        {"x": augmented(fit, batch_size, settings.augment, cfg.seed), "shuffle": False}  # shuffled in the pipeline
        if settings.augment
        else {"x": fit.images, "y": fit.labels, "batch_size": batch_size}
    )
    model.fit(
        **inputs,
        validation_data=(holdout.images, holdout.labels),
        epochs=settings.max_epochs,
        callbacks=callbacks,
        verbose=0,
    )

    holdout_metrics = model.evaluate(holdout.images, holdout.labels, verbose=0, return_dict=True)
    test = model.evaluate(dataset.test.images, dataset.test.labels, verbose=0, return_dict=True)
    scores = [h.metrics.get(objective.name) for h in epoch_log.history]
    finite = [s for s in scores if s is not None]
    best_epoch = int((np.argmax if objective.direction == "max" else np.argmin)(finite)) if finite else len(scores) - 1
    record = RetrainRecord(
        hyperparameters=values,
        train_samples=len(fit),
        holdout_samples=len(holdout),
        epochs_run=len(epoch_log.history),
        best_epoch=best_epoch,
        history=epoch_log.history,
        holdout_metrics={k: float(v) for k, v in holdout_metrics.items()},
        test_loss=float(test["loss"]),
        test_accuracy=float(test["accuracy"]),
        seconds=time.monotonic() - started,
    )
    log.info(
        "retrain done: %d epochs, best epoch %d, test accuracy %.4f (%.0fs)",
        record.epochs_run,
        best_epoch + 1,
        record.test_accuracy,
        record.seconds,
    )
    return model, record
