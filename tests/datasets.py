"""Image datasets written to disk for tests: real handwritten digits (scikit-learn's 1,797 8x8
images) and a synthetic RGB set, as folders of class folders. Plain functions, so that any test
(data, models, serving) can lay one out in its own tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

RGB_CLASSES = ("blue", "green", "red")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (1797, 8, 8) images (0..16 scaled to 0..255) and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def write_digits_folder(root: Path, layout: Literal["single", "split"] = "single") -> tuple[np.ndarray, np.ndarray]:
    """The digits as grayscale PNGs, ``root/<digit>/<index>.png``, or with ``layout="split"``
    ``root/train/<digit>/...`` and ``root/test/<digit>/...`` (every fifth image to test).
    Returns the arrays written (all of them, in sklearn's order)."""
    from PIL import Image

    images, labels = digits_arrays()
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        split = "" if layout == "single" else ("test" if index % 5 == 0 else "train")
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{index:04d}.png")
    return images, labels


def rgb_image(label: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 (H, W, 3) image whose channel ``2 - label`` (blue, green, red) is bright."""
    image = rng.integers(0, 60, size=(height, width, 3)).astype(np.uint8)
    image[..., 2 - label] = rng.integers(160, 256, size=(height, width))
    return image


def write_rgb_folder(
    root: Path, per_class: int = 12, size: int = 32, odd_sizes: bool = True, seed: int = 0
) -> dict[Path, tuple[int, tuple[int, int]]]:
    """A 3-class RGB set, ``root/<blue|green|red>/<n>.png``, ``size`` x ``size``; with ``odd_sizes``
    every fourth image is 40x36 and every fifth 24x24, and every third is saved as JPEG.
    Returns each file's label and (H, W)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written: dict[Path, tuple[int, tuple[int, int]]] = {}
    for label, name in enumerate(RGB_CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            shape = (size, size)
            if odd_sizes and n % 4 == 1:
                shape = (40, 36)
            elif odd_sizes and n % 5 == 2:
                shape = (24, 24)
            path = folder / f"{n:03d}.{'jpg' if odd_sizes and n % 3 == 0 else 'png'}"
            Image.fromarray(rgb_image(label, *shape, rng), mode="RGB").save(path)
            written[path] = (label, shape)
    return written
