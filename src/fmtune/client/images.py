"""Turn what users have (arrays, PIL images, image files) into one uint8 batch of the model's shape.

The shape is one image's, ``(H, W)`` for grayscale or ``(H, W, C)`` with C 1 or 3, as the served
model declares it (-1 for a size it leaves open). Arrays must already have it (or be a batch of
it): a wrong size or channel count is refused, since resampling an array would guess its layout.
PIL images and files of any size and mode are converted, as Pillow does it best (LANCZOS).
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
DEFAULT_SHAPE: tuple[int, ...] = (SIDE, SIDE)  # the Fashion-MNIST models', for callers that know no other


def show(shape: Sequence[int]) -> str:
    """A shape as users write it, with ``?`` for an open size: ``(28, 28)``, ``(?, ?, 3)``."""
    dims = ["?" if d < 0 else str(d) for d in shape]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def _fits(dims: Sequence[int], expected: Sequence[int]) -> bool:
    return len(dims) == len(expected) and all(e < 0 or d == e for d, e in zip(dims, expected, strict=True))


def _channels(shape: Sequence[int]) -> int:
    return shape[2] if len(shape) == 3 else 1


def _from_image_file(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - pillow ships with the client extra
        raise InvalidInputError("reading image files needs Pillow (pip install 'fmtune[client]')") from exc
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            image.load()
            return _from_pil(ImageOps.exif_transpose(image), shape)  # a phone photo stands as it was taken
    except UnidentifiedImageError:
        raise InvalidInputError(f"{path}: not an image Pillow can read (PNG or JPEG expected)") from None
    except OSError as exc:  # truncated or corrupt past its header
        raise InvalidInputError(f"{path}: cannot read the image ({exc})") from None


def _from_pil(image: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Converted to L or RGB by the model's channel count, and resized to its height and width."""
    from PIL import Image

    converted = image.convert("RGB" if _channels(shape) == 3 else "L")
    height, width = shape[0], shape[1]
    if height > 0 and width > 0 and converted.size != (width, height):
        converted = converted.resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(converted, dtype=np.uint8)
    return array[..., None] if len(shape) == 3 and shape[2] == 1 else array


def _is_pil(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.")


def _channel_hint(dims: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """Why an array whose height and width fit does not: its channel count, named."""
    if len(dims) >= 2 and _fits(dims[-2:], shape[:2]):
        got = 1
    elif len(dims) >= 3 and _fits(dims[-3:-1], shape[:2]) and dims[-1] in (1, 3, 4):
        got = dims[-1]
    else:
        return ""
    wanted = _channels(shape)
    if got == wanted:
        return ""
    mode = "RGB" if wanted == 3 else "grayscale"
    return (
        f": it has {got} channel{'s' if got > 1 else ''} and the model takes {wanted} ({mode}); "
        "convert it, or pass PIL images or files, which are converted"
    )


def _shaped(array: np.ndarray, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """The array as a batch ``(N, *shape)``: one image, a batch, or a grayscale one without its axis of 1."""
    dims = array.shape
    if _fits(dims, shape):
        return array[None]
    if len(dims) == len(shape) + 1 and _fits(dims[1:], shape):
        return array
    plane = shape[:2]
    if len(shape) == 3 and shape[2] == 1 and (_fits(dims, plane) or (len(dims) == 3 and _fits(dims[1:], plane))):
        return _shaped(array[..., None], what, shape)  # grayscale without the model's channel axis of 1
    batch = f"(N, {show(shape)[1:]}"
    raise InvalidInputError(f"{what}: shape {dims} is not {show(shape)} or {batch}{_channel_hint(dims, shape)}")


def _check_array(array: np.ndarray, what: str, shape: tuple[int, ...]) -> np.ndarray:
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InvalidInputError(f"{what}: dtype {array.dtype} is not supported; use uint8 pixels or floats in [0, 1]")
    array = _shaped(array, what, shape)
    if array.shape[0] == 0:
        raise InvalidInputError(f"{what}: empty batch")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise InvalidInputError(f"{what}: contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise InvalidInputError(f"{what}: float images must lie in [0, 1]; found values in [{low:g}, {high:g}]")
        return np.rint(array * 255.0).astype(np.uint8)
    if array.dtype != np.uint8:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise InvalidInputError(f"{what}: integer pixels must lie in [0, 255]; found values in [{low}, {high}]")
        return array.astype(np.uint8)
    return array


def one(item: Any, what: str, shape: tuple[int, ...] = DEFAULT_SHAPE) -> np.ndarray:
    """One input (array, PIL image or path) as uint8 ``(N, *shape)``."""
    if isinstance(item, str | PathLike):
        return _from_image_file(Path(item), shape)[None]
    if _is_pil(item):
        return _from_pil(item, shape)[None]
    if isinstance(item, np.ndarray):
        return _check_array(item, what, shape)
    raise InvalidInputError(f"{what}: unsupported input of type {type(item).__name__}")


def to_batch(images: Any, shape: tuple[int, ...] = DEFAULT_SHAPE) -> np.ndarray:
    """A batch of ``shape`` images from an array, a PIL image, a path, or a sequence of those."""
    if isinstance(images, np.ndarray | str | PathLike) or _is_pil(images):
        return one(images, "images", shape)
    if isinstance(images, Sequence):
        if len(images) == 0:
            raise InvalidInputError("images: empty batch")
        if all(isinstance(x, int | float) for x in images):
            raise InvalidInputError(f"images: a flat list of numbers is not an image; pass a {show(shape)} array")
        parts = [
            one(item if not isinstance(item, list) else np.asarray(item), f"images[{i}]", shape)
            for i, item in enumerate(images)
        ]
        sizes = {part.shape[1:] for part in parts}
        if len(sizes) > 1:  # only where the model leaves a size open
            raise InvalidInputError(f"images: sizes {sorted(sizes)} differ; one request sends images of one size")
        return np.concatenate(parts)
    raise InvalidInputError(f"images: unsupported input of type {type(images).__name__}")


# Fashion-MNIST and MNIST are light objects on a black background (border pixels near 0). A photo
# on a white background is the other way round, and a model trained on the first reads it as noise.
LIGHT_BORDER = 128


def light_background(batch: np.ndarray) -> np.ndarray:
    """Per image of a uint8 ``(N, H, W)`` or ``(N, H, W, C)`` batch: is the mean of its border pixels
    (every channel) light (>= 128)?"""
    count = len(batch)
    edges = [batch[:, 0], batch[:, -1], batch[:, 1:-1, 0], batch[:, 1:-1, -1]]
    border = np.concatenate([edge.reshape(count, -1) for edge in edges], axis=1, dtype=np.float64)
    return np.asarray(border.mean(axis=1) >= LIGHT_BORDER)


def orient(
    batch: np.ndarray, invert: bool | None = None, dark_background: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The batch as the model expects it, and which images were inverted (255 - x).

    ``invert=None`` inverts the images whose background is light, if the model's images are light
    on dark (``dark_background``); a model of any other images gets them as they are. True or
    False forces it for all.
    """
    if invert is None:
        flip = light_background(batch) if dark_background else np.zeros(len(batch), bool)
    else:
        flip = np.full(len(batch), bool(invert))
    if not flip.any():
        return batch, flip
    where = flip.reshape(-1, *([1] * (batch.ndim - 1)))
    return np.where(where, 255 - batch, batch).astype(np.uint8), flip
