"""What a loaded dataset is, whatever its source: the errors, the spec, the splits.

Images are uint8, ``(N, H, W)`` for grayscale or ``(N, H, W, 3)`` for colour (a loader given
``(N, H, W, 1)`` keeps it; the folder, npz and loader sources squeeze it to ``(N, H, W)`` so that
grayscale has one form). Labels are integers in ``[0, num_classes)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from fmtune.data.fingerprint import fingerprint


class DatasetError(RuntimeError):
    """A dataset file is missing, truncated or corrupt; the message names the file."""


class DatasetNotFoundError(DatasetError):
    """No searched directory holds the files; the message lists where it looked."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is, apart from its arrays: its name, classes and how its images behave.

    ``sha256`` is only for IDX datasets (IDX file name without .gz -> sha256 of its decompressed
    bytes); other sources have none and are identified by ``Dataset.fingerprint`` instead.
    """

    name: str
    folder: str
    class_names: tuple[str, ...]
    sha256: dict[str, str] = field(default_factory=dict)
    system_dirs: tuple[Path, ...] = ()
    # Does a left-right mirror keep the label? True for clothes, false for digits: it decides
    # whether flip augmentation and test-time flips are sound.
    flip_invariant: bool = False
    # Are the objects light on a dark background (the MNIST family)? The SDK inverts light-background
    # images only for such datasets.
    dark_background: bool = False


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 (N, H, W) or (N, H, W, C)
    labels: np.ndarray  # integers (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    train: Split
    val: Split
    test: Split
    source: str  # where it came from, for logs

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def num_classes(self) -> int:
        return len(self.spec.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image's shape, ``(H, W)`` or ``(H, W, C)``: what a model's input must accept."""
        return tuple(int(d) for d in self.train.images.shape[1:])

    @property
    def flip_invariant(self) -> bool:
        return self.spec.flip_invariant

    @property
    def dark_background(self) -> bool:
        return self.spec.dark_background

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of every split's images and labels and of the class names: a resumed run compares
        it with the one it recorded to tell that its data changed (computed once, ~0.1 s for 70k
        28x28 images)."""
        splits = {"train": self.train, "val": self.val, "test": self.test}
        return fingerprint({name: (s.images, s.labels) for name, s in splits.items()}, self.class_names)
