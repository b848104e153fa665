"""Retrain the best configuration on train+val, then evaluate once on the test set.

Two recipes (``retrain.schedule``):

- ``plateau``: early stopping on a small stratified holdout of train+val, halving the learning
  rate when the holdout stops improving;
- ``cosine``: a linear warm-up, then a cosine decay to zero over the planned epochs, with no early
  stopping, so the result does not hang on one noisy holdout epoch. Under a time budget the plan
  is made after the first epoch, from what it cost: as many epochs as fit before the deadline.

The test set is touched exactly once, at the end, by the model that is exported (with test-time
flips when ``retrain.test_time_flip`` is set).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np

from fmtune.config import ExperimentConfig, RetrainConfig
from fmtune.data import Dataset, Split, stratified_split
from fmtune.hypermodels import NUM_CLASSES, build_from_values
from fmtune.results import RetrainRecord
from fmtune.text import format_metrics
from fmtune.trials import Epoch

log = logging.getLogger("fmtune")


class EpochLog(keras.callbacks.Callback):
    """One line per epoch, for terminals and ``kubectl logs``."""

    def __init__(self, label: str, epochs: int):
        super().__init__()
        self.label, self.epochs = label, epochs
        self.history: list[Epoch] = []
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        metrics: dict[str, float | None] = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append(Epoch(epoch=epoch, metrics=metrics))
        self.seconds.append(time.monotonic() - self._started)
        log.info(
            "%s epoch %d/%d: %s (%.1fs)", self.label, epoch + 1, self.epochs, format_metrics(metrics), self.seconds[-1]
        )


def cosine_rate(step: int, base: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at ``step``: linear warm-up to ``base``, then cosine decay to zero.

    >>> [round(cosine_rate(s, 1.0, 2, 6), 3) for s in range(7)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine(keras.callbacks.Callback):
    """Sets the optimiser's learning rate before every batch (``cosine_rate``); ``total_steps`` may
    be changed once the plan is known (``EpochPlan``)."""

    def __init__(self, base: float, warmup_steps: int, total_steps: int):
        super().__init__()
        self.base, self.warmup_steps, self.total_steps = base, warmup_steps, total_steps
        self.step = 0

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        rate = cosine_rate(self.step, self.base, self.warmup_steps, self.total_steps)
        self.model.optimizer.learning_rate.assign(rate)
        self.step += 1


def typical_epoch(seconds: Iterable[float]) -> float | None:
    """The typical cost of an epoch among ``seconds``: their median (None for none).

    >>> typical_epoch([4.0, 4.2, 3.9, 9.0])
    4.1
    """
    values = list(seconds)
    return statistics.median(values) if values else None


class EpochPlan(keras.callbacks.Callback):
    """Ends training after the planned epochs: ``max_epochs``, or under a deadline as many as fit
    before it with ``reserve_epochs`` (the final evaluation, in epochs) to spare.

    The plan is made after the first epoch and made again after the second, whose cost leaves out
    the model's build and tracing. After that it is checked at every epoch against the recent
    epochs' median cost and only shortened, so that a host that slows down still gets a schedule
    that decays to its end, and the learning rate never rises again. An epoch that would end past
    the deadline is not begun."""

    def __init__(
        self,
        max_epochs: int,
        deadline: float | None,
        schedule: WarmupCosine | None,
        steps_per_epoch: int,
        reserve_epochs: float = 0.0,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__()
        self.max_epochs, self.deadline, self.schedule, self.clock = max_epochs, deadline, schedule, clock
        self.steps_per_epoch, self.reserve_epochs = steps_per_epoch, reserve_epochs
        self.planned = max_epochs
        self._started = 0.0
        self._seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = self.clock()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        now = self.clock()
        self._seconds.append(now - self._started)
        if self.deadline is not None:  # a plan with no room for another epoch ends at this one
            recent = typical_epoch(self._seconds[1:][-3:] or self._seconds)
            assert recent is not None
            self._plan(epoch, now, self.deadline, recent)
        if epoch + 1 >= self.planned:
            self.model.stop_training = True

    def _plan(self, epoch: int, now: float, deadline: float, cost: float) -> None:
        fits = int((deadline - now) / cost - self.reserve_epochs)
        planned = max(epoch + 1, min(self.max_epochs, epoch + 1 + fits))
        if epoch >= 2 and planned >= self.planned:  # from here on, only shortened
            return
        self.planned = planned
        if self.schedule is not None:
            self.schedule.total_steps = self.planned * self.steps_per_epoch
        log.info(
            "retrain: epoch %d took %.1fs; %d epoch(s) in all fit in the %.0fs left",
            epoch + 1,
            self._seconds[-1],
            self.planned,
            deadline - now,
        )


def merged_train_val(dataset: Dataset) -> Split:
    return Split(
        np.concatenate([dataset.train.images, dataset.val.images]),
        np.concatenate([dataset.train.labels, dataset.val.labels]),
    )


def trial_split(cfg: ExperimentConfig, dataset: Dataset) -> Split:
    """What a trial trains on: the train split, or a stratified subset of it when trials are meant
    to be cheap (``search.train_samples``)."""
    wanted = cfg.search.train_samples
    if wanted is None or wanted >= len(dataset.train):
        return dataset.train
    _, subset = stratified_split(dataset.train.labels, wanted / len(dataset.train), cfg.seed + 2)
    return dataset.train.subset(subset)


def retrain_samples(cfg: ExperimentConfig, dataset: Dataset) -> int:
    """How many images retraining fits on (train+val, less the holdout)."""
    total = len(dataset.train) + len(dataset.val)
    return total - round(total * cfg.retrain.holdout_fraction)


def augmented(
    split: Split, batch_size: int, kinds: Sequence[str], seed: int, one_hot: bool = False, shuffle: bool = True
) -> Any:
    """A batched tf.data pipeline, shuffled each epoch, with random flips, shifts and/or erased
    rectangles, as uint8 images (the model's input type; nearest-pixel shifts keep values whole)."""
    import tensorflow as tf

    layers: list[keras.layers.Layer] = []
    if "flip" in kinds:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if "shift" in kinds:
        shift = 2 / 28
        layers.append(
            keras.layers.RandomTranslation(shift, shift, fill_mode="constant", interpolation="nearest", seed=seed)
        )
    if "erase" in kinds:
        layers.append(keras.layers.RandomErasing(factor=0.5, scale=(0.02, 0.2), fill_value=0, seed=seed))

    def apply(images: Any, labels: Any) -> Any:
        x = tf.cast(images[..., None], tf.float32)
        for layer in layers:
            x = layer(x, training=True)
        y = tf.one_hot(tf.cast(labels, tf.int32), NUM_CLASSES) if one_hot else labels
        return tf.cast(tf.squeeze(x, -1), tf.uint8), y

    pipeline = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if shuffle:
        pipeline = pipeline.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    # One map call at a time: the random layers draw from one seeded stream, so calls in parallel
    # would take its numbers in a different order on every run.
    return pipeline.batch(batch_size).map(apply).prefetch(tf.data.AUTOTUNE)


def with_flip_average(model: keras.Model) -> keras.Model:
    """The model averaged over the image and its mirror image (test-time augmentation for
    mirror-symmetric classes), with the same input and output."""
    inputs = keras.Input(shape=(28, 28), dtype="uint8", name="image")
    mirrored = keras.layers.Lambda(lambda x: keras.ops.flip(x, axis=2), name="mirror")(inputs)
    outputs = keras.layers.Average(name="probabilities")([model(inputs), model(mirrored)])
    return keras.Model(inputs, outputs, name=f"{model.name}_flip_averaged")


def _compile(model: keras.Model, settings: RetrainConfig, learning_rate: float) -> None:
    """The tuned optimiser again, with label smoothing when asked (which needs one-hot labels)."""
    loss: Any = (
        keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing)
        if settings.label_smoothing
        else "sparse_categorical_crossentropy"
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"])


def _callbacks(
    settings: RetrainConfig,
    objective: Any,
    learning_rate: float,
    steps_per_epoch: int,
    deadline: float | None,
    reserve_epochs: float,
) -> list[keras.callbacks.Callback]:
    if settings.schedule == "cosine":
        warmup = round(settings.warmup_epochs * steps_per_epoch)
        schedule = WarmupCosine(learning_rate, warmup, settings.max_epochs * steps_per_epoch)
        return [schedule, EpochPlan(settings.max_epochs, deadline, schedule, steps_per_epoch, reserve_epochs)]
    callbacks: list[keras.callbacks.Callback] = [
        EpochPlan(settings.max_epochs, deadline, None, steps_per_epoch, reserve_epochs)
    ]
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
    return callbacks


def retrain(
    cfg: ExperimentConfig, values: dict[str, Any], dataset: Dataset, deadline: float | None = None
) -> tuple[keras.Model, RetrainRecord]:
    """Train the configuration ``values`` on train+val and evaluate it on the test set; with a
    ``deadline`` (wall clock), training and the evaluation end in time for it."""
    started = time.monotonic()
    settings = cfg.retrain
    full = merged_train_val(dataset)
    if settings.holdout_fraction:
        keep, held_out = stratified_split(full.labels, settings.holdout_fraction, cfg.seed + 1)
        fit, holdout = full.subset(keep), full.subset(held_out)
    else:
        fit, holdout = full, None

    keras.utils.set_random_seed(cfg.seed)
    model, hp = build_from_values(cfg.search.family, values, cfg.search.hyperparameters)
    batch_size, learning_rate = hp.get("batch_size"), float(hp.get("learning_rate"))
    one_hot = settings.label_smoothing > 0
    _compile(model, settings, learning_rate)
    steps = math.ceil(len(fit) / batch_size)
    epoch_log = EpochLog("retrain", settings.max_epochs)
    # The evaluations after training, in epochs: a training step costs about three forward passes.
    evaluated = (len(dataset.test) + (len(holdout) if holdout is not None else 0)) * (1 + settings.test_time_flip)
    reserve = evaluated / len(fit) / 3
    callbacks = [epoch_log, *_callbacks(settings, cfg.search.objective, learning_rate, steps, deadline, reserve)]
    log.info(
        "retrain: %d images%s, %s schedule, up to %d epochs%s, batch size %s%s",
        len(fit),
        f" (+{len(holdout)} held out)" if holdout is not None else "",
        settings.schedule,
        settings.max_epochs,
        f" within {deadline - time.time():.0f}s" if deadline is not None else "",
        batch_size,
        f", augmented ({' + '.join(settings.augment)})" if settings.augment else "",
    )

    def batches(split: Split, train: bool) -> Any:
        return augmented(split, batch_size, settings.augment if train else [], cfg.seed, one_hot, shuffle=train)

    model.fit(
        batches(fit, train=True),
        validation_data=batches(holdout, train=False) if holdout is not None else None,
        epochs=settings.max_epochs,
        callbacks=callbacks,
        verbose=0,
    )

    final = with_flip_average(model) if settings.test_time_flip else model
    if final is not model:
        _compile(final, settings, learning_rate)
    holdout_metrics = (
        final.evaluate(batches(holdout, train=False), verbose=0, return_dict=True) if holdout is not None else {}
    )
    test = final.evaluate(batches(dataset.test, train=False), verbose=0, return_dict=True)
    objective = cfg.search.objective
    scores = [h.metrics.get(objective.name) for h in epoch_log.history]
    finite = [s for s in scores if s is not None]
    best_epoch = int((np.argmax if objective.direction == "max" else np.argmin)(finite)) if finite else len(scores) - 1
    record = RetrainRecord(
        hyperparameters=values,
        train_samples=len(fit),
        holdout_samples=len(holdout) if holdout is not None else 0,
        epochs_run=len(epoch_log.history),
        best_epoch=best_epoch,
        history=epoch_log.history,
        epoch_seconds=[round(s, 2) for s in epoch_log.seconds],
        holdout_metrics={k: float(v) for k, v in holdout_metrics.items()},
        test_loss=float(test["loss"]),
        test_accuracy=float(test["accuracy"]),
        seconds=time.monotonic() - started,
    )
    log.info(
        "retrain done: %d epochs, test accuracy %.4f (%.0fs)", record.epochs_run, record.test_accuracy, record.seconds
    )
    return final, record
