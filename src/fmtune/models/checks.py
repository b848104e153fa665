"""The check a model plugin passes once, before any worker starts: built from its space's defaults,
is it a compiled Keras model that takes the data's images, gives one probability per class, trains
on the data's integer labels and reports the search's objective?

Every problem is a ``PluginError`` naming it in one line, so that a run stops at once (exit 2)
instead of failing the same way in every trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_tuner
import numpy as np

from fmtune.config import SearchConfig
from fmtune.data import Dataset
from fmtune.models.plugins import PluginError, hypermodel, kind_of, plugin_name
from fmtune.text import one_line


def check_search(search: SearchConfig, dataset: Dataset, found: Any = None, label: str | None = None) -> keras.Model:
    """The search's model plugin, checked against a few of the dataset's training images
    (``found``: the plugin itself, when the caller holds it, see ``plugins.hypermodel``; ``label``:
    what messages call it, when not its name in the config, e.g. a notebook's function)."""
    metric = search.objective.name.removeprefix("val_")
    name = label or plugin_name(search)
    return check(name, dataset.train.images[:2], dataset.num_classes, search.hyperparameters, metric, found)


def check(
    name: str,
    images: np.ndarray,
    num_classes: int,
    overrides: Mapping[str, Any] | None = None,
    metric: str | None = None,
    found: Any = None,
) -> keras.Model:
    """Load and build the plugin ``name`` from its defaults and run it on ``images`` (a few of the
    data's, uint8); the model, or a PluginError that says what is wrong. ``metric``: one the model
    must report, because the search's objective is it on the validation data."""
    input_shape: Sequence[int] = images.shape[1:]
    hm = hypermodel(name, input_shape, num_classes, overrides, found)
    try:
        model = hm.build(keras_tuner.HyperParameters())
    except PluginError:
        raise
    except (Exception, SystemExit) as exc:
        raise PluginError(f"{name}: building the model raised {one_line(exc)}") from exc
    if not isinstance(model, keras.Model):
        hint = " (does the builder end with 'return model'?)" if model is None else ""
        raise PluginError(f"{name}: the builder returned {kind_of(model)}, not a keras.Model{hint}")
    if not model.compiled or model.optimizer is None:
        raise PluginError(f"{name}: the model is not compiled; call model.compile(optimizer, loss, metrics) in it")
    outputs = _outputs(name, model, images)
    labels = np.arange(len(images)) % num_classes
    _check_training(name, model, images, labels, outputs, num_classes, metric)
    return model


def _outputs(name: str, model: keras.Model, images: np.ndarray) -> Any:
    """The model's one output for ``images``, which must be one probability per class per image."""
    try:
        outputs = model(images, training=False)
    except (Exception, SystemExit) as exc:
        shape = "x".join(str(d) for d in images.shape[1:])
        raise PluginError(
            f"{name}: the model does not take the data's images (uint8, {shape}): {one_line(exc)}"
        ) from exc
    if isinstance(outputs, Mapping | list | tuple):
        raise PluginError(f"{name}: the model has {len(outputs)} outputs; it must have one, a probability per class")
    return outputs


def _check_training(
    name: str,
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    outputs: Any,
    num_classes: int,
    metric: str | None,
) -> None:
    """The output's shape, the loss on integer labels, and the objective's metric among those the
    model reports: what ``fit`` would otherwise find out in every trial."""
    got = tuple(getattr(outputs, "shape", ()))
    if got != (len(images), num_classes):
        raise PluginError(
            f"{name}: the model's output has shape {tuple(d for d in got[1:])} per image, but the data has "
            f"{num_classes} classes: end it with a Dense({num_classes}, activation='softmax')"
        )
    try:
        model.compute_loss(x=images, y=labels, y_pred=outputs, training=False)
    except (Exception, SystemExit) as exc:
        raise PluginError(
            f"{name}: the model's loss does not take the data's labels (integers from 0 to {num_classes - 1}): "
            f"{one_line(exc)}; compile it with loss='sparse_categorical_crossentropy'"
        ) from exc
    try:
        reported = set(model.compute_metrics(images, labels, outputs, sample_weight=None))
    except (Exception, SystemExit) as exc:
        raise PluginError(
            f"{name}: the model's metrics do not take the data's labels (integers): {one_line(exc)}"
        ) from exc
    if metric is not None and metric not in reported | {"loss"}:
        shown = ", ".join(sorted(reported)) or "none"
        raise PluginError(
            f"{name}: the search's objective needs a metric named '{metric}', but the model reports {shown}: "
            f"compile it with metrics=['{metric}']"
        )
