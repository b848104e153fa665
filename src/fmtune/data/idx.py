"""IDX datasets: the canonical gz files, located, verified by checksum, and split.

Search order: an explicit data dir (``--data-dir`` or ``FMTUNE_DATA_DIR``), Debian's dataset
package, the Keras cache, then a download as Keras does.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from fmtune.data.registry import _FILES, DATASETS, TEST_FILES, resolve_spec
from fmtune.data.splits import stratified_split
from fmtune.data.types import Dataset, DatasetError, DatasetNotFoundError, DatasetSpec, Split

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def read_idx(data: bytes, name: str, *, images: bool) -> np.ndarray:
    """Parse IDX bytes, checking the header against the payload length."""
    header = 16 if images else 8
    if len(data) < header:
        raise DatasetError(f"{name}: truncated: {len(data)} bytes is shorter than the IDX header")
    magic, count = struct.unpack(">II", data[:8])
    expected_magic = IMAGE_MAGIC if images else LABEL_MAGIC
    if magic != expected_magic:
        raise DatasetError(
            f"{name}: not an IDX {'image' if images else 'label'} file (magic {magic}, expected {expected_magic})"
        )
    shape: tuple[int, ...] = (count,)
    if images:
        rows, cols = struct.unpack(">II", data[8:16])
        shape = (count, rows, cols)
    want = header + int(np.prod(shape))
    if len(data) != want:
        raise DatasetError(f"{name}: truncated or padded: {len(data)} bytes, header says {want}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_verified(path: Path, expected_sha256: str) -> bytes:
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        hint = _identify(digest)
        raise DatasetError(
            f"{path}: checksum mismatch: sha256 of the decompressed bytes is {digest}, expected {expected_sha256}{hint}"
        )
    return data


def _identify(digest: str) -> str:
    for spec in DATASETS.values():
        for file, sha in spec.sha256.items():
            if sha == digest:
                return f" (this file is {spec.name}'s {file})"
    return " (the file is corrupt, or a different dataset)"


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _candidate_dirs(spec: DatasetSpec, data_dir: Path | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [data_dir / spec.folder, data_dir]
    dirs += list(spec.system_dirs)
    dirs.append(keras_cache_dir() / spec.folder)
    return dirs


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _load_idx_dir(spec: DatasetSpec, directory: Path, files: tuple[str, ...] = _FILES) -> dict[str, np.ndarray] | None:
    """The named arrays (all four by default) from one directory, or None if it lacks any of them."""
    paths = {name: _find_file(directory, name) for name in files}
    if not all(paths.values()):
        return None
    arrays = {}
    for name, path in paths.items():
        assert path is not None
        data = _read_verified(path, spec.sha256[name])
        arrays[name] = read_idx(data, str(path), images="images" in name)
    return arrays


def _load_mnist_npz(path: Path) -> dict[str, np.ndarray]:  # all four: the npz is one file
    _read_verified(path, MNIST_NPZ_SHA256)
    with np.load(path, allow_pickle=False) as f:
        return {
            "train-images-idx3-ubyte": f["x_train"],
            "train-labels-idx1-ubyte": f["y_train"],
            "t10k-images-idx3-ubyte": f["x_test"],
            "t10k-labels-idx1-ubyte": f["y_test"],
        }


def _download(spec: DatasetSpec) -> tuple[dict[str, np.ndarray], str]:
    from keras.utils import get_file  # heavy import, only on this path

    try:
        if spec.name == "mnist":
            path = Path(get_file("mnist.npz", origin=KERAS_ORIGIN + "mnist.npz", file_hash=MNIST_NPZ_SHA256))
            return _load_mnist_npz(path), f"download ({path})"
        for name in spec.sha256:
            get_file(f"{name}.gz", origin=f"{KERAS_ORIGIN}{name}.gz", cache_subdir=f"datasets/{spec.folder}")
    except Exception as exc:  # network errors come in many types
        raise DatasetError(f"{spec.name}: download failed ({exc})") from None
    directory = keras_cache_dir() / spec.folder
    arrays = _load_idx_dir(spec, directory)
    assert arrays is not None
    return arrays, f"download ({directory})"


def locate(
    spec: DatasetSpec, data_dir: Path | None, download: bool, files: tuple[str, ...] = _FILES
) -> tuple[dict[str, np.ndarray], str]:
    """Find and verify the named arrays (all four by default); returns them with a description of the source."""
    searched = _candidate_dirs(spec, data_dir)
    for directory in searched:
        arrays = _load_idx_dir(spec, directory, files)
        if arrays is not None:
            return arrays, str(directory)
    if spec.name == "mnist" and (npz := keras_cache_dir() / "mnist.npz").is_file():
        return _load_mnist_npz(npz), str(npz)
    if download and spec.name in DATASETS:
        return _download(spec)
    where = ", ".join(str(d) for d in searched)
    missing = ", ".join(f"{n}.gz" for n in files)
    raise DatasetNotFoundError(f"{spec.name}: files not found ({missing}); searched {where}; download is off")


def load(
    name: str,
    data_dir: Path | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 42,
    download: bool = True,
) -> Dataset:
    """Load a registered dataset with a fixed-seed stratified validation split of the train set."""
    spec = resolve_spec(name, data_dir)
    arrays, source = locate(spec, data_dir, download)
    train = Split(arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"])
    test = Split(arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"])
    for split_name, split in (("train", train), ("test", test)):
        _checked(spec, split_name, split)
    keep, held_out = stratified_split(train.labels, val_fraction, seed)
    return Dataset(spec, train.subset(keep), train.subset(held_out), test, source)


def _checked(spec: DatasetSpec, split_name: str, split: Split) -> Split:
    if split.images.shape[1:] != (28, 28) or len(split.images) != len(split.labels):
        raise DatasetError(
            f"{spec.name} {split_name}: images {split.images.shape} do not match labels {split.labels.shape}"
        )
    return split


def load_test(name: str, data_dir: Path | None = None) -> tuple[Split, str]:
    """Only the test split, and where it was found: a sample of test images needs just those two
    files (each verified by its checksum), never a download."""
    spec = resolve_spec(name, data_dir)
    arrays, source = locate(spec, data_dir, download=False, files=TEST_FILES)
    return _checked(spec, "test", Split(arrays[TEST_FILES[0]], arrays[TEST_FILES[1]])), source
