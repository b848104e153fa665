"""Retraining's augmentation pipeline: what the model sees is still a uint8 image of the class."""

from __future__ import annotations

import numpy as np

from fmtune.data import Split
from fmtune.training import augmented


def test_flips_and_shifts_move_pixels_without_changing_them() -> None:
    images = np.zeros((64, 28, 28), np.uint8)
    images[:, 10:15, 3:6] = 200  # a bar near the left edge
    labels = np.arange(64) % 10
    batches = list(augmented(Split(images, labels), 32, ["flip", "shift"], seed=0))
    seen = np.concatenate([b[0].numpy() for b in batches])
    assert seen.dtype == np.uint8 and seen.shape == images.shape
    assert set(np.unique(seen)) <= {0, 200}  # nearest-pixel shifts: no blended values
    assert sorted(np.concatenate([b[1].numpy() for b in batches])) == sorted(labels)  # shuffled, none lost
    left = [int(np.argwhere(im > 0)[:, 1].min()) for im in seen]
    assert min(left) < 3 and max(left) > 20  # shifted left of the bar's place, and flipped to the right
    assert len({(int(np.argwhere(im > 0)[:, 0].min()), lf) for im, lf in zip(seen, left, strict=True)}) > 4
