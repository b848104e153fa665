"""Image files read with Pillow: first only their headers (format, size, mode), so that a bad file,
a mix of sizes or of colour and grayscale is refused before any pixel is decoded; then the pixels,
converted and resized to the one shape the dataset has.

Pillow is imported inside the functions: the base install (numpy, pydantic) has no Pillow, and
``fmtune.data`` is imported by the client too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmtune.data.types import DatasetError

# What both the in-memory loader (Pillow) and the streaming one (tf.io.decode_image) can read.
FORMATS = ("PNG", "JPEG", "BMP", "GIF")
# 16-bit and float modes: converting them to uint8 is a choice (clip? scale?) fmtune will not guess.
WIDE_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")


@dataclass(frozen=True)
class Probe:
    """One file's header: enough to choose the dataset's shape without decoding pixels."""

    path: Path
    width: int
    height: int
    gray: bool  # one channel (L, LA, 1) rather than colour (RGB, RGBA, palette, CMYK)


def probe(path: Path, cls: str) -> Probe:
    """Read a file's header; a file Pillow cannot identify, or of another format, is refused."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            fmt, (width, height), mode = img.format, img.size, img.mode
    except UnidentifiedImageError:
        raise DatasetError(
            f"{path}: not an image (class '{cls}'); class folders may hold only {'/'.join(FORMATS)} files"
        ) from None
    except Exception as exc:  # Pillow's plugins raise many types on damaged headers
        raise DatasetError(f"{path}: unreadable image (class '{cls}'): {type(exc).__name__}: {exc}") from None
    if fmt not in FORMATS:
        raise DatasetError(f"{path}: {fmt} image (class '{cls}'); only {', '.join(FORMATS)} are read")
    if mode in WIDE_MODES:
        raise DatasetError(f"{path}: {mode} image (class '{cls}'): 16-bit or float pixels; convert it to 8-bit")
    return Probe(path, width, height, Image.getmodebase(mode) == "L")


def choose_shape(
    probes: Sequence[Probe], image_size: tuple[int, int] | None, color_mode: str | None, where: str
) -> tuple[int, ...]:
    """``(H, W)`` for grayscale or ``(H, W, 3)``: the declared size and mode, else the one all
    files share; a mix without a declaration is an error naming a file of each kind."""
    gray = color_mode == "grayscale"
    if color_mode is None:
        kinds = {p.gray for p in probes}
        if len(kinds) > 1:
            one_gray = next(p.path for p in probes if p.gray)
            one_color = next(p.path for p in probes if not p.gray)
            raise DatasetError(
                f"{where}: images mix grayscale and colour ({one_gray} is grayscale, {one_color} is colour); "
                "set color_mode: grayscale or rgb to convert them"
            )
        gray = kinds == {True}
    if image_size is not None:
        height, width = image_size
    else:
        first = probes[0]
        other = next((p for p in probes if (p.width, p.height) != (first.width, first.height)), None)
        if other is not None:
            count = len({(p.height, p.width) for p in probes})
            raise DatasetError(
                f"{where}: images differ in size ({first.path} is {first.height}x{first.width}, {other.path} is "
                f"{other.height}x{other.width}; {count} sizes, as HxW); set image_size: [H, W] to resize them"
            )
        height, width = first.height, first.width
    return (height, width) if gray else (height, width, 3)


def decode_into(out: np.ndarray, paths: Sequence[Path], classes: Sequence[str]) -> np.ndarray:
    """Decode each file into its row of ``out`` (uint8 ``(N, H, W[, 3])``), converting the mode
    and resizing (bilinear, antialiased) where the file differs; one array, no per-image copies kept."""
    from PIL import Image

    height, width = out.shape[1:3]
    mode = "L" if out.ndim == 3 else "RGB"
    for i, (path, cls) in enumerate(zip(paths, classes, strict=True)):
        try:
            with Image.open(path) as img:
                converted = img.convert(mode)
            if converted.size != (width, height):
                converted = converted.resize((width, height), Image.Resampling.BILINEAR)
            out[i] = np.asarray(converted)
        except Exception as exc:  # truncated or corrupt pixel data, in whichever plugin
            problem = f"{type(exc).__name__}: {exc}"
            raise DatasetError(f"{path}: cannot decode the image (class '{cls}'): {problem}") from None
    return out
