"""Retrain the best configuration on train+val, then evaluate once on the test set.

Two recipes (``retrain.schedule``):

- ``plateau``: early stopping on a small stratified holdout of train+val, halving the learning
  rate when the holdout stops improving;
- ``cosine``: a linear warm-up, then a cosine decay to zero over the planned epochs, with no early
  stopping, so the result does not hang on one noisy holdout epoch. Under a time budget the plan
  is as many steps as fit before the deadline (the last epoch perhaps cut short), made again
  after every epoch from what the epochs cost (``fmtune.pacing.EpochPlan``).

The test set is touched exactly once, at the end, by the model that is exported (with test-time
flips when ``retrain.test_time_flip`` is set).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from fmtune import devices
from fmtune.config import ExperimentConfig, RetrainConfig
from fmtune.data import Dataset, Split, stratified_split
from fmtune.layout import ExperimentDir
from fmtune.models.plugins import build_from_values
from fmtune.pacing import EpochLog, EpochPlan, WarmupCosine
from fmtune.results import RetrainRecord
from fmtune.trials import Epoch

log = logging.getLogger("fmtune")
DEFAULT_BATCH_SIZE = 32  # Keras's, for a model that declares no batch_size hyperparameter
SHIFT_SHARE = 2 / 28  # random shifts of up to this share of the image's height and width


def accuracy(model: keras.Model, batches: Any) -> float:
    """Test accuracy for a model compiled without an accuracy metric."""
    hits = total = 0
    for images, labels in batches:
        predicted = np.argmax(model.predict_on_batch(images), axis=-1)
        hits += int(np.sum(predicted == np.asarray(labels).reshape(-1)))
        total += len(predicted)
    return hits / max(total, 1)


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
    split: Split,
    batch_size: int,
    kinds: Sequence[str],
    seed: int,
    num_classes: int,
    one_hot: bool = False,
    shuffle: bool = True,
) -> Any:
    """A batched tf.data pipeline, shuffled each epoch, with random flips, shifts (by a share of
    the image's size) and/or erased rectangles, as uint8 images of the split's own shape (the
    model's input type; nearest-pixel shifts keep values whole)."""
    import tensorflow as tf

    grayscale = split.images.ndim == 3  # (N, H, W): the layers want a channel axis

    layers: list[keras.layers.Layer] = []
    if "flip" in kinds:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if "shift" in kinds:
        shift = SHIFT_SHARE
        layers.append(
            keras.layers.RandomTranslation(shift, shift, fill_mode="constant", interpolation="nearest", seed=seed)
        )
    if "erase" in kinds:
        layers.append(keras.layers.RandomErasing(factor=0.5, scale=(0.02, 0.2), fill_value=0, seed=seed))

    def apply(images: Any, labels: Any) -> Any:
        x = tf.cast(images[..., None] if grayscale else images, tf.float32)
        for layer in layers:
            x = layer(x, training=True)
        y = tf.one_hot(tf.cast(labels, tf.int32), num_classes) if one_hot else labels
        return tf.cast(tf.squeeze(x, -1) if grayscale else x, tf.uint8), y

    pipeline = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    if shuffle:
        pipeline = pipeline.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    # One map call at a time: the random layers draw from one seeded stream, so calls in parallel
    # would take its numbers in a different order on every run.
    return pipeline.batch(batch_size).map(apply).prefetch(tf.data.AUTOTUNE)


def with_flip_average(model: keras.Model, input_shape: Sequence[int]) -> keras.Model:
    """The model averaged over the image and its mirror image (test-time augmentation for
    mirror-symmetric classes), with the same input and output."""
    inputs = keras.Input(shape=tuple(input_shape), dtype="uint8", name="image")
    mirrored = keras.layers.Lambda(lambda x: keras.ops.flip(x, axis=2), name="mirror")(inputs)
    outputs = keras.layers.Average(name="probabilities")([model(inputs), model(mirrored)])
    return keras.Model(inputs, outputs, name=f"{model.name}_flip_averaged")


def best_trial_weights(cfg: ExperimentConfig, trial_id: str | None) -> Path | None:
    """The best trial's saved weights, for ``retrain.warm_start``: None when it is off or when no
    worker left them (its volume was not shared, or the trial ended before its first epoch)."""
    if not cfg.retrain.warm_start or trial_id is None:
        return None
    found = ExperimentDir(cfg.experiment_dir).checkpoints(trial_id)
    if not found:
        log.warning("retrain: starts from scratch, as trial %s left no weights", trial_id)
    return found[0] if found else None


def _loaded(model: keras.Model, weights: Path) -> bool:
    """Whether ``weights`` (a trial's checkpoint) loaded into ``model``; why not, in the log."""
    try:
        model.load_weights(str(weights))
    except (OSError, ValueError, KeyError) as error:
        log.warning("retrain: starts from scratch, as %s did not load: %s", weights, error)
        return False
    log.info("retrain: starts from %s", weights)
    return True


def _in_float32(model: keras.Model, cfg: ExperimentConfig, values: dict[str, Any], dataset: Dataset) -> keras.Model:
    """The trained weights in a float32 copy of the model, which computes in float32 wherever it is
    served: CPUs without native bfloat16 emulate it, slower than float32."""
    search = cfg.search.model_copy(update={"precision": "float32"})
    copy, _ = build_from_values(search, values, dataset.input_shape, dataset.num_classes)
    copy.set_weights(model.get_weights())
    return copy


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
) -> tuple[EpochPlan, list[keras.callbacks.Callback]]:
    """The plan of retraining's steps, and every callback of the recipe, the plan among them."""
    if settings.schedule == "cosine":
        warmup = round(settings.warmup_epochs * steps_per_epoch)
        schedule = WarmupCosine(learning_rate, warmup, settings.max_epochs * steps_per_epoch)
        plan = EpochPlan(settings.max_epochs, deadline, schedule, steps_per_epoch, reserve_epochs)
        return plan, [schedule, plan]
    plan = EpochPlan(settings.max_epochs, deadline, None, steps_per_epoch, reserve_epochs)
    callbacks: list[keras.callbacks.Callback] = [plan]
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
    return plan, callbacks


def retrain(
    cfg: ExperimentConfig,
    values: dict[str, Any],
    dataset: Dataset,
    deadline: float | None = None,
    on_epoch: Callable[[Epoch], None] | None = None,
    initial_weights: Path | None = None,
) -> tuple[keras.Model, RetrainRecord]:
    """Train the configuration ``values`` on train+val and evaluate it on the test set; with a
    ``deadline`` (wall clock), training and the evaluation end in time for it. ``on_epoch`` hears
    of each epoch as it ends. ``initial_weights``: a trial's saved weights to start from; weights
    that do not load leave the model as built, from scratch."""
    started = time.monotonic()
    settings = cfg.retrain
    full = merged_train_val(dataset)
    if settings.holdout_fraction:
        keep, held_out = stratified_split(full.labels, settings.holdout_fraction, cfg.seed + 1)
        fit, holdout = full.subset(keep), full.subset(held_out)
    else:
        fit, holdout = full, None

    precision = devices.precision(cfg.search.precision)
    keras.utils.set_random_seed(cfg.seed)
    model, hp = build_from_values(cfg.search, values, dataset.input_shape, dataset.num_classes)
    if initial_weights is not None and not _loaded(model, initial_weights):
        keras.utils.set_random_seed(cfg.seed)  # a half-loaded model would be neither start
        model, hp = build_from_values(cfg.search, values, dataset.input_shape, dataset.num_classes)
        initial_weights = None
    batch_size = int(hp.values.get("batch_size", DEFAULT_BATCH_SIZE))
    # fmtune's own families are compiled again with the recipe's loss; a user's model keeps its own
    # compile (optimiser, loss, metrics), and the schedule moves its optimiser's learning rate.
    own_recipe = cfg.search.hypermodel is None
    learning_rate = float(hp.get("learning_rate")) if own_recipe else float(model.optimizer.learning_rate)
    one_hot = own_recipe and settings.label_smoothing > 0
    if own_recipe:
        _compile(model, settings, learning_rate)
    kinds = [k for k in settings.augment if k != "flip" or dataset.flip_invariant]
    flip_average = settings.test_time_flip and dataset.flip_invariant
    steps = math.ceil(len(fit) / batch_size)
    epoch_log = EpochLog("retrain", settings.max_epochs, on_epoch)
    # The evaluations after training, in epochs: a training step costs about three forward passes.
    evaluated = (len(dataset.test) + (len(holdout) if holdout is not None else 0)) * (1 + flip_average)
    reserve = evaluated / len(fit) / 3
    plan, recipe = _callbacks(settings, cfg.search.objective, learning_rate, steps, deadline, reserve)
    log.info(
        "retrain: %d images%s, %s schedule, up to %d epochs%s, batch size %s%s%s",
        len(fit),
        f" (+{len(holdout)} held out)" if holdout is not None else "",
        settings.schedule,
        settings.max_epochs,
        f" within {deadline - time.time():.0f}s" if deadline is not None else "",
        batch_size,
        f", augmented ({' + '.join(kinds)})" if kinds else "",
        f", {precision}" if precision != "float32" else "",
    )

    def batches(split: Split, train: bool) -> Any:
        return augmented(
            split, batch_size, kinds if train else [], cfg.seed, dataset.num_classes, one_hot, shuffle=train
        )

    model.fit(
        batches(fit, train=True),
        validation_data=batches(holdout, train=False) if holdout is not None else None,
        epochs=settings.max_epochs,
        callbacks=[epoch_log, *recipe],
        verbose=0,
    )

    if precision != "float32":
        model = _in_float32(model, cfg, values, dataset)
        _compile(model, settings, learning_rate)
    final = with_flip_average(model, dataset.input_shape) if flip_average else model
    if final is not model:
        if own_recipe:
            _compile(final, settings, learning_rate)
        else:
            final.compile(**model.get_compile_config())
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
        last_epoch_share=plan.last_epoch_share,
        warm_start=str(initial_weights) if initial_weights is not None else None,
        holdout_metrics={k: float(v) for k, v in holdout_metrics.items()},
        test_loss=float(test["loss"]),
        test_accuracy=float(test["accuracy"]) if "accuracy" in test else accuracy(final, batches(dataset.test, False)),
        seconds=time.monotonic() - started,
    )
    log.info(
        "retrain done: %d epochs, test accuracy %.4f (%.0fs)", record.epochs_run, record.test_accuracy, record.seconds
    )
    return final, record
