import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from fmtune import data
from fmtune.data import DatasetError

from ..conftest import SHARED_DATA, SYNTHETIC, idx_bytes


def test_loads_and_splits_fixed_by_seed(synthetic_dir: Path) -> None:
    ds = data.load(SYNTHETIC, synthetic_dir.parent, val_fraction=0.1, seed=3, download=False)
    assert ds.train.images.dtype == np.uint8 and ds.train.images.shape[1:] == (28, 28)
    assert len(ds.train) + len(ds.val) == 600 and len(ds.test) == 200
    assert np.bincount(ds.val.labels).tolist() == [6] * 10  # 10% of every class
    again = data.load(SYNTHETIC, synthetic_dir, val_fraction=0.1, seed=3, download=False)
    assert np.array_equal(ds.val.images, again.val.images)
    other = data.load(SYNTHETIC, synthetic_dir, val_fraction=0.1, seed=4, download=False)
    assert not np.array_equal(ds.val.images, other.val.images)


def test_checksum_mismatch_names_the_file(fresh_synthetic_dir: Path) -> None:
    target = fresh_synthetic_dir / "train-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(target.read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10
    target.write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: checksum mismatch"):
        data.load(SYNTHETIC, fresh_synthetic_dir, download=False)


def test_truncated_gzip_names_the_file(fresh_synthetic_dir: Path) -> None:
    target = fresh_synthetic_dir / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:500])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        data.load(SYNTHETIC, fresh_synthetic_dir, download=False)


def test_truncated_idx_payload_is_caught_by_the_header() -> None:
    images = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match=r"imgs: truncated or padded: 3152 bytes, header says 3936"):
        data.read_idx(images[:-784], "imgs", images=True)
    with pytest.raises(DatasetError, match="shorter than the IDX header"):
        data.read_idx(images[:10], "imgs", images=True)
    with pytest.raises(DatasetError, match="not an IDX label file"):
        data.read_idx(images, "labels", images=False)


def test_missing_files_list_where_it_looked(fresh_synthetic_dir: Path) -> None:
    (fresh_synthetic_dir / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"files not found .*searched .*synthetic"):
        data.load(SYNTHETIC, fresh_synthetic_dir, download=False)


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'"):
        data.load("cifar", tmp_path, download=False)


def test_wrong_dataset_in_place_is_identified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of the right names but from another dataset are named as such."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    mnist_labels = SHARED_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz"
    if not mnist_labels.is_file():
        pytest.skip(f"{mnist_labels} not present")
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in data.DATASETS["fashion_mnist"].sha256:
        (folder / f"{name}.gz").write_bytes((SHARED_DATA / "mnist" / f"{name}.gz").read_bytes())
    with pytest.raises(DatasetError, match=r"this file is mnist's"):
        data.locate(data.DATASETS["fashion_mnist"], tmp_path, download=False)


def test_registered_checksums_match_the_shared_files() -> None:
    for spec in data.DATASETS.values():
        folder = SHARED_DATA / spec.folder
        if not folder.is_dir():
            pytest.skip(f"{folder} not present")
        for name, sha in spec.sha256.items():
            assert hashlib.sha256(gzip.decompress((folder / f"{name}.gz").read_bytes())).hexdigest() == sha


def test_stratified_split_is_disjoint_and_complete() -> None:
    labels = np.repeat(np.arange(10), 50)
    keep, held = data.stratified_split(labels, 0.2, seed=0)
    assert len(np.intersect1d(keep, held)) == 0
    assert len(keep) + len(held) == len(labels)
    assert np.bincount(labels[held]).tolist() == [10] * 10


def test_the_test_split_alone_needs_only_its_two_files(fresh_synthetic_dir: Path) -> None:
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (fresh_synthetic_dir / name).unlink()
    test, source = data.load_test(SYNTHETIC, fresh_synthetic_dir.parent)
    assert len(test) == 200 and test.images.shape[1:] == (28, 28) and source == str(fresh_synthetic_dir)
    with pytest.raises(DatasetError, match="files not found"):
        data.load(SYNTHETIC, fresh_synthetic_dir, download=False)


def test_the_test_split_is_verified_and_a_missing_one_names_its_files(fresh_synthetic_dir: Path) -> None:
    target = fresh_synthetic_dir / "t10k-labels-idx1-ubyte.gz"
    labels = bytearray(gzip.decompress(target.read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10
    target.write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        data.load_test(SYNTHETIC, fresh_synthetic_dir)
    target.unlink()
    with pytest.raises(data.DatasetNotFoundError) as caught:
        data.load_test(SYNTHETIC, fresh_synthetic_dir)
    assert "(t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)" in str(caught.value)
    assert "train-" not in str(caught.value)
