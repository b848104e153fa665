"""Shared fixtures: a tiny synthetic IDX dataset that models can actually learn."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SYNTHETIC = "synthetic"
CLASS_NAMES = [f"class{i}" for i in range(10)]
# The quick preset without its budget and ASHA, retraining with early stopping on a holdout: runs
# whose length and trials do not depend on timing, for tests about something else.
CLASSIC = [
    "budget_minutes=null",
    "search.asha.enabled=false",
    "retrain.schedule=plateau",
    "retrain.holdout_fraction=0.05",
]
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise uint8 images (N, 28, 28) or labels (N,) in IDX format."""
    header = struct.pack(">IIII", 2051, *array.shape) if array.ndim == 3 else struct.pack(">II", 2049, len(array))
    return header + array.astype(np.uint8).tobytes()


def synthetic_arrays(count: int, seed: int, signal: int = 125) -> tuple[np.ndarray, np.ndarray]:
    """Each class lights a different 7x7 block by ``signal`` under noise: learnable in a couple of
    epochs, or, with a faint signal, only partly, so that configurations differ."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 130, size=(count, 28, 28), dtype=np.int64)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 4)
        images[i, row * 7 : row * 7 + 7, col * 7 : col * 7 + 7] += signal
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_dataset(directory: Path, train: int = 600, test: int = 200, name: str = SYNTHETIC, signal: int = 125) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_arrays(train, seed=1, signal=signal)
    test_x, test_y = synthetic_arrays(test, seed=2, signal=signal)
    files = {
        "train-images-idx3-ubyte": idx_bytes(train_x),
        "train-labels-idx1-ubyte": idx_bytes(train_y),
        "t10k-images-idx3-ubyte": idx_bytes(test_x),
        "t10k-labels-idx1-ubyte": idx_bytes(test_y),
    }
    for file, payload in files.items():
        (directory / f"{file}.gz").write_bytes(gzip.compress(payload))
    manifest = {
        "name": name,
        "class_names": CLASS_NAMES,
        "sha256": {file: hashlib.sha256(payload).hexdigest() for file, payload in files.items()},
        # As Fashion-MNIST declares, so that the recipe's flips run here too.
        "flip_invariant": True,
    }
    (directory / "dataset.json").write_text(json.dumps(manifest))
    return directory


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / SYNTHETIC)


@pytest.fixture
def fresh_synthetic_dir(tmp_path: Path) -> Path:
    """A private copy, for tests that damage files."""
    return write_dataset(tmp_path / SYNTHETIC)
