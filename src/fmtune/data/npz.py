"""An ``.npz`` file with Keras' array names: ``x_train``, ``y_train``, ``x_test``, ``y_test`` and,
optionally, ``class_names``. Read without pickle: an npz is data, never code."""

from __future__ import annotations

import zipfile
from typing import Any

import numpy as np

from fmtune.data.checks import checked_class_names, dataset_from_arrays
from fmtune.data.source import DataSourceConfig
from fmtune.data.types import Dataset, DatasetError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(source: DataSourceConfig, seed: int) -> Dataset:
    """The npz's arrays as a Dataset, validation split off train by ``seed``."""
    assert source.path is not None
    path = source.path
    if not path.is_file():
        raise DatasetError(f"{path}: no such npz file")
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: not an npz (a zip of .npy arrays, as np.savez writes)")
    arrays: dict[str, Any] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                has = ", ".join(archive.files) or "nothing"
                raise DatasetError(f"{path}: missing key {', '.join(repr(k) for k in missing)} (has: {has})")
            for key in (*KEYS, "class_names"):
                if key in archive.files:
                    arrays[key] = _read(archive, key, str(path))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable npz ({type(exc).__name__}: {exc})") from None
    names = checked_class_names(arrays.get("class_names"), f"{path}: class_names")
    return dataset_from_arrays(source, seed, str(path), arrays, names)


def _read(archive: Any, key: str, where: str) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except ValueError as exc:  # an object array refused without pickle, or a damaged member
        raise DatasetError(f"{where}: {key}: cannot be read without pickle ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{where}: {key}: damaged ({type(exc).__name__}: {exc})") from None
