"""Turn what users have (arrays, PIL images, image files) into one uint8 batch (N, 28, 28).

Everything is checked here, before anything is sent, so a bad input fails fast with a message
that names the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from fmtune.client.errors import InvalidInputError

SIDE = 28


def _from_image_file(path: Path) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - pillow ships with the client extra
        raise InvalidInputError("reading image files needs Pillow (pip install 'fmtune[client]')") from exc
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            return _from_pil(image)
    except UnidentifiedImageError:
        raise InvalidInputError(f"{path}: not an image Pillow can read (PNG or JPEG expected)") from None


def _from_pil(image: Any) -> np.ndarray:
    from PIL import Image

    gray = image.convert("L")
    if gray.size != (SIDE, SIDE):
        gray = gray.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.uint8)


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.")


def _check_array(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InvalidInputError(f"{what}: dtype {array.dtype} is not supported; use uint8 pixels or floats in [0, 1]")
    if array.ndim not in (2, 3) or array.shape[-2:] != (SIDE, SIDE):
        raise InvalidInputError(f"{what}: shape {array.shape} is not (28, 28) or (N, 28, 28)")
    if array.ndim == 3 and array.shape[0] == 0:
        raise InvalidInputError(f"{what}: empty batch")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InvalidInputError(f"{what}: contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise InvalidInputError(f"{what}: float images must lie in [0, 1]; found values in [{low:g}, {high:g}]")
        array = np.rint(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InvalidInputError(f"{what}: integer pixels must lie in [0, 255]; found values in [{low}, {high}]")
        array = array.astype(np.uint8)
    return array.reshape((-1, SIDE, SIDE))


def one(item: Any, what: str) -> np.ndarray:
    """One input (array, PIL image or path) as uint8 (N, 28, 28)."""
    if isinstance(item, str | PathLike):
        return _from_image_file(Path(item))[None]
    if _is_pil(item):
        return _from_pil(item)[None]
    if isinstance(item, np.ndarray):
        return _check_array(item, what)
    raise InvalidInputError(f"{what}: unsupported input of type {type(item).__name__}")


def to_batch(images: Any) -> np.ndarray:
    """A batch from an array, a PIL image, a path, or a sequence of those."""
    if isinstance(images, np.ndarray | str | PathLike) or _is_pil(images):
        return one(images, "images")
    if isinstance(images, Sequence):
        if len(images) == 0:
            raise InvalidInputError("images: empty batch")
        if all(isinstance(x, int | float) for x in images):
            raise InvalidInputError("images: a flat list of numbers is not an image; pass a (28, 28) array")
        parts = [
            one(item if not isinstance(item, list) else np.asarray(item), f"images[{i}]")
            for i, item in enumerate(images)
        ]
        return np.concatenate(parts)
    raise InvalidInputError(f"images: unsupported input of type {type(images).__name__}")


# Fashion-MNIST and MNIST are light objects on a black background (border pixels near 0). A photo
# on a white background is the other way round, and a model trained on the first reads it as noise.
LIGHT_BORDER = 128


def light_background(batch: np.ndarray) -> np.ndarray:
    """Per image of a uint8 (N, 28, 28) batch: is the mean of its border pixels light (>= 128)?"""
    border = np.concatenate(
        [batch[:, 0, :], batch[:, -1, :], batch[:, 1:-1, 0], batch[:, 1:-1, -1]], axis=1, dtype=np.float64
    )
    return np.asarray(border.mean(axis=1) >= LIGHT_BORDER)


def orient(batch: np.ndarray, invert: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The batch as the model expects it (light on dark), and which images were inverted (255 - x).

    ``invert=None`` inverts the images whose background is light; True or False forces it for all.
    """
    flip = light_background(batch) if invert is None else np.full(len(batch), bool(invert))
    if not flip.any():
        return batch, flip
    return np.where(flip[:, None, None], 255 - batch, batch).astype(np.uint8), flip
