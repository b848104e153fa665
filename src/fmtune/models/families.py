"""The built-in model families (mlp, cnn, deep_cnn, vgg): Keras Tuner HyperModels, and plugins
like any user's (``fmtune.models.plugins``).

Every model takes raw uint8 images of the data's shape, ``(H, W)`` or ``(H, W, C)``, and normalises
inside the graph, so the exported model serves the same bytes it was trained on. The MLP flattens
any shape; the CNNs take H x W x C. Batch size is a tuned hyperparameter (applied in ``fit``), as
in the seed project that subclassed the Bayesian tuner for it.

Under ``search.precision: mixed_bfloat16`` the layers compute in bfloat16 with float32 weights, and
the probabilities in float32; retraining hands its weights to a float32 copy for the export.

The spaces themselves (each family's defaults, and the config's overrides of them) are declared
in ``fmtune.spaces``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import keras
import keras_tuner

from fmtune.spaces import Choice, FloatRange, HyperParameterSpec, IntRange, resolved_specs, spec_for, spec_values


class FamilyHyperModel(keras_tuner.HyperModel):
    """Shared plumbing: declaring hyperparameters from specs, compiling, batch size in fit.

    ``parallel_share``: the share of an epoch's work that spreads over more threads (Amdahl's
    law), with which the budget predicts a retraining epoch on all the cores from trial epochs on
    one (``fmtune.run.budget.thread_speedup``). An MLP's small matrices gain next to nothing."""

    family = ""
    parallel_share = 0.0

    def __init__(
        self,
        overrides: Mapping[str, HyperParameterSpec] | None = None,
        input_shape: Sequence[int] = (28, 28),
        num_classes: int = 10,
        precision: str = "float32",
    ):
        """``precision``: the Keras dtype policy its layers compute in (``fmtune.devices.precision``)."""
        super().__init__(name=self.family)
        self.specs = resolved_specs(self.family, overrides or {})
        self.input_shape, self.num_classes, self.precision = tuple(input_shape), num_classes, precision

    def declare(self, hp: keras_tuner.HyperParameters, name: str) -> Any:
        spec = spec_for(self.specs, name)
        assert spec is not None, f"{self.family} declares no '{name}'"
        if isinstance(spec, IntRange):
            return hp.Int(name, spec.min, spec.max, step=spec.step, sampling=spec.sampling)
        if isinstance(spec, FloatRange):
            return hp.Float(name, spec.min, spec.max, step=spec.step, sampling=spec.sampling)
        if isinstance(spec, Choice):
            return hp.Choice(name, spec.values)
        return hp.Fixed(name, spec.value)

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        self.declare(hp, "batch_size")
        with _dtype_policy(self.precision):
            inputs = keras.Input(shape=self.input_shape, dtype="uint8", name="image")
            x = keras.layers.Rescaling(1.0 / 255.0, name="normalise")(inputs)
            outputs = keras.layers.Dense(self.num_classes, activation="softmax", name="probabilities", dtype="float32")(
                self.body(hp, x)
            )
        model = keras.Model(inputs, outputs, name=self.family)
        model.compile(
            optimizer=keras.optimizers.Adam(self.declare(hp, "learning_rate")),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def body(self, hp: keras_tuner.HyperParameters, x: Any) -> Any:
        raise NotImplementedError

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any) -> Any:
        return model.fit(*args, batch_size=hp.get("batch_size"), **kwargs)


@contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    """Layers made inside take the policy ``name``; the global one is left as it was."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class MLP(FamilyHyperModel):
    """1-3 Dense layers with dropout after each; units and dropout tuned per layer."""

    family = "mlp"

    def body(self, hp: keras_tuner.HyperParameters, x: Any) -> Any:
        layer_counts = spec_values(self.specs["num_layers"])
        num_layers = self.declare(hp, "num_layers")
        x = keras.layers.Flatten()(x)
        for i in range(max(layer_counts)):
            active = [n for n in layer_counts if n > i]
            if not active:
                break
            with hp.conditional_scope("num_layers", active):
                units = self.declare(hp, f"units_{i}")
                dropout = self.declare(hp, f"dropout_{i}")
            if i < num_layers:
                x = keras.layers.Dense(units, activation="relu")(x)
                x = keras.layers.Dropout(dropout)(x)
        return x


# Keras's default (0.99) leaves the moving statistics far from the data's after the few hundred
# steps of an ASHA rung, so a trial's first validation scores would measure that lag, not the model.
BN_MOMENTUM = 0.9
# A VGG epoch on 2 threads alone ran 1.5-2.1x as fast as on 1 thread beside another worker, 1.65x
# in the median of four standard runs (reports/search-centre.md); the other conv families are
# taken to spread alike.
CONV_PARALLEL_SHARE = 0.8


def _as_image(x: Any, input_shape: tuple[int, ...]) -> Any:
    """Grayscale (H, W) images as (H, W, 1), for the convolutions."""
    return keras.layers.Reshape((*input_shape, 1))(x) if len(input_shape) == 2 else x


def _pool(x: Any) -> Any:
    """Halve the image, while it has pixels to halve (small images, such as 8x8 digits, run out
    before the deeper blocks do)."""
    height, width = x.shape[1], x.shape[2]
    return keras.layers.MaxPooling2D()(x) if min(height, width) >= 2 else x


def _conv_bn_relu(x: Any, filters: int, kernel: int, l2: float = 0.0) -> Any:
    reg = keras.regularizers.L2(l2) if l2 else None
    x = keras.layers.Conv2D(filters, kernel, padding="same", use_bias=False, kernel_regularizer=reg)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return keras.layers.Activation("relu")(x)


class CNN(FamilyHyperModel):
    """Two conv blocks, each pooled straight away (cheap on CPU), then a small dense head."""

    family = "cnn"
    parallel_share = CONV_PARALLEL_SHARE

    def body(self, hp: keras_tuner.HyperParameters, x: Any) -> Any:
        kernel = self.declare(hp, "kernel_size")
        l2 = self.declare(hp, "l2")
        dropout = self.declare(hp, "dropout")
        x = _as_image(x, self.input_shape)
        for block in range(2):
            x = _conv_bn_relu(x, self.declare(hp, f"filters_{block}"), kernel, l2)
            x = _pool(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dropout(dropout)(x)
        x = keras.layers.Dense(
            self.declare(hp, "units"), activation="relu", kernel_regularizer=keras.regularizers.L2(l2)
        )(x)
        return keras.layers.Dropout(dropout)(x)


class DeepCNN(FamilyHyperModel):
    """2, 4 or 6 conv layers in blocks of two, pooled after each block, filters doubling."""

    family = "deep_cnn"
    parallel_share = CONV_PARALLEL_SHARE

    def body(self, hp: keras_tuner.HyperParameters, x: Any) -> Any:
        conv_layers = int(self.declare(hp, "conv_layers"))
        filters = self.declare(hp, "filters")
        dropout = self.declare(hp, "dropout")
        x = _as_image(x, self.input_shape)
        for block in range(max(1, conv_layers // 2)):
            for _ in range(2 if conv_layers > 1 else 1):
                x = _conv_bn_relu(x, filters * 2**block, 3)
            x = _pool(x)
            x = keras.layers.Dropout(dropout / 2)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(self.declare(hp, "units"), activation="relu")(x)
        return keras.layers.Dropout(dropout)(x)


class VGG(FamilyHyperModel):
    """VGG-style blocks of two 3x3 Conv-BN-ReLU layers, each block pooled and dropped out, filters
    doubling from ``width`` per block; width and depth (``blocks``) are tuned, as is the head."""

    family = "vgg"
    parallel_share = CONV_PARALLEL_SHARE

    def body(self, hp: keras_tuner.HyperParameters, x: Any) -> Any:
        blocks = int(self.declare(hp, "blocks"))
        width = int(self.declare(hp, "width"))
        dropout = self.declare(hp, "dropout")
        x = _as_image(x, self.input_shape)
        for block in range(blocks):
            for _ in range(2):
                x = _conv_bn_relu(x, width * 2**block, 3)
            x = _pool(x)
            x = keras.layers.Dropout(dropout / 2)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(self.declare(hp, "units"), use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = keras.layers.Activation("relu")(x)
        return keras.layers.Dropout(dropout)(x)


FAMILIES: dict[str, type[FamilyHyperModel]] = {"mlp": MLP, "cnn": CNN, "deep_cnn": DeepCNN, "vgg": VGG}
