"""Arrays from an npz, a loader or a folder checked into a ``Dataset``, or refused with a message
that names where they came from (``where``: the file or loader) and which array, before anything
starts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmtune.data.source import DataSourceConfig
from fmtune.data.splits import stratified_split
from fmtune.data.types import Dataset, DatasetError, DatasetSpec, Split

LIGHT_BORDER = 128  # the SDK's rule (fmtune.client.images): a border this bright is a light background
FLOAT_HINT = "convert them, e.g. (x * 255).round().astype('uint8') for values in [0, 1]"


def checked_images(value: Any, where: str) -> np.ndarray:
    """uint8 ``(N, H, W)`` or ``(N, H, W, 3)``; ``(N, H, W, 1)`` becomes ``(N, H, W)``; integers
    in 0..255 of another dtype are converted."""
    array = _as_array(value, where)
    shape = array.shape
    if array.ndim not in (3, 4) or (array.ndim == 4 and shape[-1] not in (1, 3)):
        hint = ""
        if array.ndim == 2:
            hint = " (flat vectors? reshape them to (N, H, W))"
        elif array.ndim == 4 and shape[-1] == 4:
            hint = " (RGBA? drop the alpha channel)"
        raise DatasetError(f"{where}: shape {shape}: images must be (N, H, W) or (N, H, W, C) with C 1 or 3{hint}")
    if shape[0] == 0:
        raise DatasetError(f"{where}: empty: no images")
    if 0 in shape:
        raise DatasetError(f"{where}: shape {shape}: an image needs at least one pixel")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu":
            raise DatasetError(f"{where}: dtype {array.dtype}: images must be uint8 (0..255); {FLOAT_HINT}")
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise DatasetError(f"{where}: values from {low} to {high}: images must be uint8 (0..255)")
        array = array.astype(np.uint8)
    if array.ndim == 4 and shape[-1] == 1:
        array = array[..., 0]
    return np.ascontiguousarray(array)


def checked_labels(value: Any, where: str) -> np.ndarray:
    """int64 ``(N,)``; ``(N, 1)`` (Keras' CIFAR convention) is flattened, whole floats accepted."""
    array = _as_array(value, where)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DatasetError(f"{where}: shape {array.shape}: labels must be (N,) class indices (one-hot? take argmax)")
    if array.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))
        if len(bad):
            raise DatasetError(f"{where}[{bad[0]}] is {array[bad[0]].item()!r}: labels must be whole numbers")
    elif array.dtype.kind not in "iu":
        raise DatasetError(f"{where}: dtype {array.dtype}: labels must be integer class indices")
    if len(array) == 0:
        raise DatasetError(f"{where}: empty: no labels")
    huge = np.flatnonzero(np.abs(array.astype(np.float64)) >= 2**62)  # beyond any class count, and int64
    if len(huge):
        raise DatasetError(f"{where}[{huge[0]}] is {array[huge[0]]}: out of range for a class index")
    return array.astype(np.int64)


def checked_split(images: Any, labels: Any, image_where: str, label_where: str) -> Split:
    x, y = checked_images(images, image_where), checked_labels(labels, label_where)
    if len(x) != len(y):
        raise DatasetError(f"{image_where} has {len(x)} images but {label_where} has {len(y)} labels")
    return Split(x, y)


def checked_class_names(value: Any, where: str) -> tuple[str, ...] | None:
    """Names that came with the arrays (an npz's, a loader's): distinct non-empty strings."""
    if value is None:
        return None
    items = value.tolist() if isinstance(value, np.ndarray) and value.ndim == 1 else value
    if (
        isinstance(items, str | bytes)
        or not isinstance(items, list | tuple)
        or not all(isinstance(n, str) and n for n in items)
        or len(set(items)) != len(items)
    ):
        raise DatasetError(f"{where}: expected distinct non-empty strings, one per label (got {_describe(value)})")
    return tuple(items)


def class_names_for(splits: dict[str, tuple[Split, str]], given: tuple[str, ...] | None, where: str) -> tuple[str, ...]:
    """The given names, or '0'..'K-1' with K one past the largest training label (the first split):
    a test label no training image has is out of range. Every label in range."""
    if given is None:
        top = int(next(iter(splits.values()))[0].labels.max())
        given = tuple(str(i) for i in range(max(top, 0) + 1))
    if len(given) < 2:
        raise DatasetError(f"{where}: only 1 class ({given[0]}); a classifier needs at least 2")
    for split, label_where in splits.values():
        bad = np.flatnonzero((split.labels < 0) | (split.labels >= len(given)))
        if len(bad):
            i = int(bad[0])
            raise DatasetError(
                f"{label_where}[{i}] is {split.labels[i]}: labels must be in [0, {len(given)}) "
                f"for {len(given)} classes ({len(bad)} outside)"
            )
    return given


def require_per_class(labels: np.ndarray, class_names: tuple[str, ...], where: str, minimum: int = 2) -> None:
    """Every class needs ``minimum`` images here: one is held out for validation, one kept."""
    counts = np.bincount(labels, minlength=len(class_names))
    for label, count in enumerate(counts):
        if count < minimum:
            zero = " (do the labels count from 0?)" if label == 0 and count == 0 else ""
            raise DatasetError(
                f"{where}: class '{class_names[label]}' (label {label}) has {count} image(s); "
                f"every class needs at least {minimum} (validation takes one){zero}"
            )


def dataset_from_arrays(
    source: DataSourceConfig, seed: int, where: str, arrays: dict[str, Any], class_names: tuple[str, ...] | None
) -> Dataset:
    """A Dataset from Keras-style train and test arrays, validation split off train by ``seed``."""
    train = checked_split(arrays["x_train"], arrays["y_train"], f"{where}: x_train", f"{where}: y_train")
    test = checked_split(arrays["x_test"], arrays["y_test"], f"{where}: x_test", f"{where}: y_test")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DatasetError(
            f"{where}: x_train images are {train.images.shape[1:]} but x_test images are {test.images.shape[1:]}"
        )
    names = class_names_for(
        {"train": (train, f"{where}: y_train"), "test": (test, f"{where}: y_test")},
        source.class_names or class_names,
        where,
    )
    require_per_class(train.labels, names, f"{where}: y_train")
    keep, held_out = stratified_split(train.labels, source.val_fraction, seed)
    return assemble(source, names, train.subset(keep), train.subset(held_out), test, where)


def assemble(
    source: DataSourceConfig, class_names: tuple[str, ...], train: Split, val: Split, test: Split, where: str
) -> Dataset:
    """The Dataset with its spec: the config's flags, or the defaults for a dataset of unknown kind."""
    dark = source.dark_background if source.dark_background is not None else dark_background(train.images)
    spec = DatasetSpec(
        name=source.display_name(),
        folder=str(source.path or ""),
        class_names=tuple(class_names),
        flip_invariant=bool(source.flip_invariant),
        dark_background=dark,
    )
    return Dataset(spec, train, val, test, where)


def dark_background(images: np.ndarray) -> bool:
    """Do most images have a dark border (mean below 128)? The SDK's inversion rule, applied to a
    sample of up to ~2,000 training images."""
    sample = images[:: max(1, len(images) // 2000)]
    edges = [sample[:, 0], sample[:, -1], sample[:, :, 0], sample[:, :, -1]]
    border = np.concatenate([e.reshape(len(sample), -1) for e in edges], axis=1)
    return bool(np.mean(border.mean(axis=1) < LIGHT_BORDER) > 0.5)


def _as_array(value: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise DatasetError(f"{where}: not an array ({exc})") from None
    if array.dtype.kind in "OSUV":
        raise DatasetError(f"{where}: dtype {array.dtype} ({type(value).__name__}): expected a numeric array")
    return array


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
