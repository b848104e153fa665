"""Data sources on real and synthetic images: scikit-learn's handwritten digits written out as a
folder of PNGs and read back, an RGB folder with images of other sizes, an npz and a loader
module round trip, and the streaming reader against the in-memory one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from fmtune import data
from fmtune.data import DatasetError, DataSourceConfig, folder_stream, load_source, plan_folder

from ..conftest import SYNTHETIC
from ..datasets import RGB_CLASSES, digits_arrays, write_digits_folder, write_rgb_folder

DIGITS = tuple(str(d) for d in range(10))


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits")
    write_digits_folder(root)
    return root


@pytest.fixture(scope="module")
def rgb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rgb")
    write_rgb_folder(root)
    return root


def all_images(ds: data.Dataset) -> list[bytes]:
    return sorted(image.tobytes() for split in (ds.train, ds.val, ds.test) for image in split.images)


def test_the_digits_folder_loads_back_as_written(digits_dir: Path) -> None:
    images, labels = digits_arrays()
    ds = load_source(DataSourceConfig(kind="folder", path=digits_dir, test_fraction=0.2), seed=0)
    assert ds.input_shape == (8, 8) and ds.class_names == DIGITS and ds.num_classes == 10
    assert ds.train.images.dtype == np.uint8 and ds.spec.name == digits_dir.name
    counts = sum(np.bincount(split.labels, minlength=10) for split in (ds.train, ds.val, ds.test))
    assert counts.tolist() == np.bincount(labels).tolist() and sum(counts) == 1797
    assert all_images(ds) == sorted(image.tobytes() for image in images)
    per_class = np.bincount(labels)
    assert np.abs(np.bincount(ds.test.labels) - 0.2 * per_class).max() <= 1  # stratified
    assert np.abs(np.bincount(ds.val.labels) - 0.1 * (per_class - np.bincount(ds.test.labels))).max() <= 1
    assert ds.dark_background and not ds.flip_invariant  # light strokes on black; a mirrored 2 is no 2


def test_the_fingerprint_is_stable_and_moves_with_the_data(digits_dir: Path, tmp_path: Path) -> None:
    source = DataSourceConfig(kind="folder", path=digits_dir)
    first = load_source(source, seed=0)
    assert load_source(source, seed=0).fingerprint == first.fingerprint
    assert len(first.fingerprint) == 64
    reseeded = load_source(source, seed=1)  # another validation split: other data for the search
    assert reseeded.fingerprint != first.fingerprint
    assert np.array_equal(reseeded.test.images, first.test.images)  # the test split does not move with the seed
    images, labels = write_digits_folder(tmp_path / "split", layout="split")
    ds = load_source(DataSourceConfig(kind="folder", path=tmp_path / "split"), seed=0)
    assert len(ds.test) == len(images[::5])
    assert np.bincount(ds.test.labels).tolist() == np.bincount(labels[::5]).tolist()
    target = tmp_path / "split" / "test" / "0" / "0000.png"
    pixels = np.asarray(Image.open(target)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels, mode="L").save(target)
    changed = load_source(DataSourceConfig(kind="folder", path=tmp_path / "split"), seed=0)
    assert changed.fingerprint != ds.fingerprint


def test_the_digits_stream_matches_the_in_memory_arrays(digits_dir: Path) -> None:
    source = DataSourceConfig(kind="folder", path=digits_dir)
    ds, plan = load_source(source, seed=0), plan_folder(source, seed=0)
    for split in ("train", "val", "test"):
        stream = folder_stream(source, 0, split, plan=plan)
        batches = list(stream.dataset.batch(1024).as_numpy_iterator())
        images, labels = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
        assert stream.class_names == DIGITS and stream.input_shape == (8, 8) and len(stream) == len(labels)
        assert np.array_equal(labels, getattr(ds, split).labels)
        assert np.array_equal(images, getattr(ds, split).images)  # PNGs of the dataset's size: the same pixels


def test_an_rgb_folder_with_other_sizes_is_resized_when_asked(rgb_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"images differ in size .*set image_size"):
        load_source(DataSourceConfig(kind="folder", path=rgb_dir), seed=0)
    ds = load_source(DataSourceConfig(kind="folder", path=rgb_dir, image_size=(32, 32)), seed=0)
    assert ds.input_shape == (32, 32, 3) and ds.class_names == RGB_CLASSES
    assert len(ds.train) + len(ds.val) + len(ds.test) == 36
    for split in (ds.train, ds.val, ds.test):
        # each class's own channel stays the brightest, resized or JPEG'd or not
        assert (split.images.mean(axis=(1, 2)).argmax(axis=1) == 2 - split.labels).all()
    gray = load_source(DataSourceConfig(kind="folder", path=rgb_dir, image_size=(16, 20), color_mode="grayscale"), 0)
    assert gray.input_shape == (16, 20) and gray.train.images.ndim == 3


def test_the_rgb_stream_matches_within_rounding(rgb_dir: Path) -> None:
    """Resizing and JPEG decoding by TensorFlow instead of Pillow: a few levels at most."""
    source = DataSourceConfig(kind="folder", path=rgb_dir, image_size=(32, 32))
    ds = load_source(source, seed=3)
    stream = folder_stream(source, 3, "train")
    images, labels = next(stream.dataset.batch(100).as_numpy_iterator())
    assert np.array_equal(labels, ds.train.labels) and images.shape == ds.train.images.shape
    diff = np.abs(images.astype(int) - ds.train.images.astype(int))
    assert diff.max() <= 8 and diff.mean() < 1


def test_an_npz_round_trip(tmp_path: Path) -> None:
    images, labels = digits_arrays()
    path = tmp_path / "digits.npz"
    names = np.array([f"digit {d}" for d in range(10)])
    np.savez(path, x_train=images[:1500], y_train=labels[:1500, None], x_test=images[1500:], y_test=labels[1500:])
    ds = load_source(DataSourceConfig(kind="npz", path=path, val_fraction=0.2), seed=0)
    assert ds.class_names == DIGITS and ds.spec.name == "digits" and ds.input_shape == (8, 8)
    assert np.array_equal(ds.test.images, images[1500:]) and np.array_equal(ds.test.labels, labels[1500:])
    assert len(ds.train) + len(ds.val) == 1500 and np.bincount(ds.val.labels).sum() == round(0.2 * 1500)
    np.savez(path, x_train=images[:1500, ..., None], y_train=labels[:1500], x_test=images[1500:], y_test=labels[1500:],
             class_names=names)  # fmt: skip
    named = load_source(DataSourceConfig(kind="npz", path=path, val_fraction=0.2), seed=0)
    assert named.class_names == tuple(names) and named.input_shape == (8, 8)  # (N, H, W, 1) squeezed
    assert named.fingerprint != ds.fingerprint  # the class names count
    renamed = DataSourceConfig(kind="npz", path=path, class_names=tuple("abcdefghij"), name="letters")
    assert load_source(renamed, seed=0).class_names == tuple("abcdefghij")


LOADER = """
import numpy as np

def load():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 12, 10, 3), dtype=np.uint8)
    y = np.arange(40) % 4
    return (x[:30], y[:30]), (x[30:], y[30:])

def as_dict():
    (x, y), (xt, yt) = load()
    return {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt, "class_names": ["a", "b", "c", "d"]}
"""


def test_a_loader_module_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_images.py").write_text(LOADER)
    by_file = load_source(DataSourceConfig(kind="loader", loader=f"{tmp_path}/my_images.py:load"), seed=0)
    assert by_file.input_shape == (12, 10, 3) and by_file.class_names == ("0", "1", "2", "3")
    assert by_file.spec.name == "load" and len(by_file.test) == 10
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module = load_source(DataSourceConfig(kind="loader", loader="my_images:load"), seed=0)
    assert by_module.fingerprint == by_file.fingerprint
    as_dict = load_source(DataSourceConfig(kind="loader", loader="my_images:as_dict", flip_invariant=True), seed=0)
    assert as_dict.class_names == ("a", "b", "c", "d") and as_dict.flip_invariant


def test_the_idx_source_is_the_idx_loader(synthetic_dir: Path) -> None:
    source = DataSourceConfig(kind="idx", name=SYNTHETIC, path=synthetic_dir.parent, download=False)
    ds = load_source(source, seed=3)
    same = data.load(SYNTHETIC, synthetic_dir.parent, seed=3, download=False)
    assert ds.fingerprint == same.fingerprint and ds.input_shape == (28, 28) and ds.num_classes == 10
    assert ds.dark_background and ds.flip_invariant  # as the test manifest declares (tests/conftest.py)
    unflipped = load_source(source.model_copy(update={"flip_invariant": False}), seed=3)
    assert not unflipped.flip_invariant and unflipped.fingerprint == ds.fingerprint
    assert data.DATASETS["fashion_mnist"].flip_invariant and not data.DATASETS["mnist"].flip_invariant
    data.check_source(source)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"kind": "folder"}, "path is required for kind folder"),
        ({"kind": "loader"}, "loader is required for kind loader"),
        ({"kind": "idx"}, "name is required for kind idx"),
        ({"kind": "npz", "path": "x.npz", "image_size": [8, 8]}, "image_size does not apply to kind npz"),
        ({"kind": "idx", "name": "mnist", "class_names": ["a", "b"]}, "class_names does not apply to kind idx"),
        ({"kind": "loader", "loader": "no_function"}, "expected 'module:function'"),
        ({"kind": "folder", "path": "x", "class_names": ["a", "a"]}, "at least 2 distinct"),
        ({"kind": "folder", "path": "x", "colour": "rgb"}, "Extra inputs are not permitted"),
        ({"kind": "folder", "path": "x", "test_fraction": 0.7}, "less than 0.5"),
    ],
)
def test_a_source_config_that_cannot_load_is_refused(options: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        DataSourceConfig.model_validate(options)


@pytest.mark.parametrize(
    "options",
    [
        {"kind": "idx", "name": "mnist"},
        {"kind": "folder", "path": "images", "image_size": [8, 8], "color_mode": "rgb", "class_names": ["a", "b"]},
        {"kind": "npz", "path": "d.npz", "dark_background": False},
        {"kind": "loader", "loader": "pkg.mod:load"},
    ],
)
def test_a_source_config_survives_its_own_dump(options: dict[str, object]) -> None:
    """A resolved config is written with every field and read back by the other processes."""
    source = DataSourceConfig.model_validate(options)
    assert DataSourceConfig.model_validate(source.model_dump(mode="json")) == source
