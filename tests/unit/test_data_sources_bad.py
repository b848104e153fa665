"""The bad-data corpus: each way a folder, an npz or a loader can be wrong, built in tmp_path, is
refused with a DatasetError (not a subclass, not another exception) whose message names the file,
class folder, array key or loader at fault. Property-based cases cover whole classes of input:
labels out of range, npz arrays of any shape and dtype, random bytes as image files."""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from fmtune.data import DatasetError, DataSourceConfig, load_source


def png(path: Path, value: int = 0, size: tuple[int, int] = (8, 8), mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size[1], size[0]), value).save(path)
    return path


def folder(root: Path, classes: tuple[str, ...] = ("a", "b"), per_class: int = 3) -> Path:
    for cls in classes:
        for n in range(per_class):
            png(root / cls / f"{n}.png", value=40 * n)
    return root


def refusal(source: DataSourceConfig) -> str:
    with pytest.raises(DatasetError) as caught:
        load_source(source, seed=0)
    assert type(caught.value) is DatasetError
    return str(caught.value)


def from_folder(root: Path, **options: Any) -> str:
    return refusal(DataSourceConfig(kind="folder", path=root, **options))


# --- folders: each case damages a good folder and returns (what the message must name, options) ---


def truncated_png(root: Path) -> tuple[str, dict[str, Any]]:
    target = root / "b" / "1.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)).save(target)
    target.write_bytes(target.read_bytes()[:70])  # the header survives; the pixels do not
    return str(target), {}


def text_file(root: Path) -> tuple[str, dict[str, Any]]:
    (root / "a" / "notes.txt").write_text("not an image")
    return str(root / "a" / "notes.txt"), {}


def tiff_file(root: Path) -> tuple[str, dict[str, Any]]:
    Image.new("L", (8, 8)).save(root / "a" / "scan.tif")
    return str(root / "a" / "scan.tif"), {}


def sixteen_bit(root: Path) -> tuple[str, dict[str, Any]]:
    Image.fromarray(np.full((8, 8), 4000, np.uint16)).save(root / "b" / "deep.png")
    return str(root / "b" / "deep.png"), {}


def mixed_channels(root: Path) -> tuple[str, dict[str, Any]]:
    png(root / "b" / "color.png", mode="RGB", value=0)
    return str(root / "b" / "color.png"), {}


def mixed_sizes(root: Path) -> tuple[str, dict[str, Any]]:
    png(root / "b" / "big.png", size=(10, 8))
    return str(root / "b" / "big.png"), {}


def empty_class(root: Path) -> tuple[str, dict[str, Any]]:
    (root / "c" / "sub").mkdir(parents=True)
    (root / "c" / ".hidden").write_text("")
    return "class folder 'c' has no images", {}


def one_class(root: Path) -> tuple[str, dict[str, Any]]:
    for path in (root / "b").iterdir():
        path.unlink()
    (root / "b").rmdir()
    return f"{root}: 1 class folder(s) (a)", {}


def too_few_in_a_class(root: Path) -> tuple[str, dict[str, Any]]:
    (root / "b" / "0.png").unlink()
    (root / "b" / "1.png").unlink()
    return "class 'b' (label 1) has 1 image(s)", {}


def stray_image(root: Path) -> tuple[str, dict[str, Any]]:
    png(root / "loose.png")
    return str(root / "loose.png"), {}


def classes_json_mismatch(root: Path) -> tuple[str, dict[str, Any]]:
    (root / "classes.json").write_text(json.dumps(["a", "z"]))
    return str(root / "classes.json"), {}


def class_names_mismatch(root: Path) -> tuple[str, dict[str, Any]]:
    return "listed without a folder: ['c']", {"class_names": ("a", "c")}


def train_without_test(root: Path) -> tuple[str, dict[str, Any]]:
    folder(root / "train")
    return f"{root}: has train/ but no test/", {}


def empty_test_split(root: Path) -> tuple[str, dict[str, Any]]:
    folder(root / "train")
    (root / "test").mkdir()
    return f"{root / 'test'}: no class folders with images", {}


def unknown_test_class(root: Path) -> tuple[str, dict[str, Any]]:
    folder(root / "train")
    folder(root / "test", classes=("a", "q"))
    return f"{root / 'test' / 'q'}: class folder 'q'", {}


FOLDER_CASES: dict[str, Callable[[Path], tuple[str, dict[str, Any]]]] = {
    f.__name__: f
    for f in (
        truncated_png, text_file, tiff_file, sixteen_bit, mixed_channels, mixed_sizes, empty_class, one_class,
        too_few_in_a_class, stray_image, classes_json_mismatch, class_names_mismatch, train_without_test,
        empty_test_split, unknown_test_class,
    )
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_a_bad_folder_is_refused_naming_the_file_or_class(case: str, tmp_path: Path) -> None:
    root = tmp_path / "images"
    if case not in {"train_without_test", "empty_test_split", "unknown_test_class"}:
        folder(root)
    named, options = FOLDER_CASES[case](root)
    assert named in from_folder(root, **options)


def test_declaring_the_mode_and_size_accepts_a_mix(tmp_path: Path) -> None:
    root = folder(tmp_path / "images")
    png(root / "b" / "color.png", mode="RGB", size=(12, 9))
    ds = load_source(DataSourceConfig(kind="folder", path=root, color_mode="rgb", image_size=(8, 8)), seed=0)
    assert ds.input_shape == (8, 8, 3)


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    assert f"{tmp_path / 'nowhere'}: no such folder" in from_folder(tmp_path / "nowhere")


# --- npz files ---

GOOD = {
    "x_train": np.zeros((8, 5, 5), np.uint8),
    "y_train": np.arange(8) % 2,
    "x_test": np.zeros((2, 5, 5), np.uint8),
    "y_test": np.array([0, 1]),
}
NPZ_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing key", {"y_test": None}, "missing key 'y_test' (has: x_train, y_train, x_test)"),
    ("float images", {"x_train": np.zeros((8, 5, 5), np.float32)}, "x_train: dtype float32"),
    ("flat images", {"x_train": np.zeros((8, 25), np.uint8)}, "x_train: shape (8, 25)"),
    ("rgba images", {"x_test": np.zeros((2, 5, 5, 4), np.uint8)}, "x_test: shape (2, 5, 5, 4)"),
    ("wide values", {"x_train": np.full((8, 5, 5), 300, np.int16)}, "x_train: values from 300 to 300"),
    ("negative label", {"y_train": np.array([0, 1, 0, 1, 0, -1, 0, 1])}, "y_train[5] is -1"),
    ("label out of range", {"y_test": np.array([0, 2])}, "y_test[1] is 2: labels must be in [0, 2)"),
    ("fractional label", {"y_train": np.array([0, 1, 0, 1.5, 0, 1, 0, 1])}, "y_train[3] is 1.5"),
    ("string labels", {"y_train": np.array(list("abababab"))}, "y_train: dtype <U1"),
    ("one-hot labels", {"y_train": np.eye(2)[np.arange(8) % 2]}, "y_train: shape (8, 2)"),
    ("length mismatch", {"y_train": np.arange(7) % 2}, "x_train has 8 images but"),
    ("shape mismatch", {"x_test": np.zeros((2, 6, 5), np.uint8)}, "x_train images are (5, 5) but x_test"),
    ("empty split", {"x_test": np.zeros((0, 5, 5), np.uint8), "y_test": np.array([], int)}, "x_test: empty"),
    ("one class", {"y_train": np.zeros(8, int), "y_test": np.zeros(2, int)}, "only 1 class (0)"),
    ("labels from 1", {"y_train": np.arange(8) % 2 + 1, "y_test": np.array([1, 2])}, "count from 0"),
    ("pickled names", {"class_names": np.array(["a", None], object)}, "class_names: cannot be read without pickle"),
    ("too few names", {"class_names": np.array(["a"])}, "only 1 class (a)"),
]


def write_npz(path: Path, changes: dict[str, Any]) -> Path:
    arrays = {**GOOD, **changes}
    with path.open("wb") as f:  # np.savez on a file object: no '.npz' added to the name
        np.savez(f, **{k: v for k, v in arrays.items() if v is not None}, allow_pickle=True)
    return path


@pytest.mark.parametrize(("case", "changes", "words"), NPZ_CASES, ids=[c[0] for c in NPZ_CASES])
def test_a_bad_npz_is_refused_naming_the_key(case: str, changes: dict[str, Any], words: str, tmp_path: Path) -> None:
    path = write_npz(tmp_path / "data.npz", changes)
    message = refusal(DataSourceConfig(kind="npz", path=path))
    assert message.startswith(str(path)) and words in message, message


def test_a_file_that_is_not_an_npz_is_named(tmp_path: Path) -> None:
    (tmp_path / "data.npz").write_bytes(b"\x93NUMPY not really")
    assert f"{tmp_path / 'data.npz'}: not an npz" in refusal(DataSourceConfig(kind="npz", path=tmp_path / "data.npz"))
    assert "no such npz file" in refusal(DataSourceConfig(kind="npz", path=tmp_path / "none.npz"))


# --- loaders ---

LOADERS = """
import numpy as np
GOOD = (np.zeros((4, 3, 3), np.uint8), np.array([0, 1, 0, 1])), (np.zeros((2, 3, 3), np.uint8), np.array([0, 1]))
NOT_CALLABLE = 3
def boom():
    raise ValueError("the bucket is gone")
def exits():
    raise SystemExit(2)
def nothing():
    return None
def three():
    return GOOD + (None,)
def partial():
    return {"x_train": GOOD[0][0], "y_train": GOOD[0][1]}
def ragged():
    return ([[1, 2], [3]], [0, 1]), GOOD[1]
def bad_names():
    return {"x_train": GOOD[0][0], "y_train": GOOD[0][1], "x_test": GOOD[1][0], "y_test": GOOD[1][1],
            "class_names": "ab"}
"""
LOADER_CASES = [
    ("boom", "raised ValueError: the bucket is gone"),
    ("exits", "raised SystemExit: 2"),
    ("nothing", "returned a NoneType; expected (x_train, y_train), (x_test, y_test)"),
    ("three", "returned a tuple of 3"),
    ("partial", "returned a dict without x_test, y_test (has: x_train, y_train)"),
    ("ragged", "x_train: not an array"),
    ("bad_names", "class_names: expected distinct non-empty strings"),
    ("NOT_CALLABLE", "NOT_CALLABLE is a int, not a function"),
    ("missing", "has no attribute 'missing'"),
]


@pytest.mark.parametrize(("function", "words"), LOADER_CASES)
def test_a_bad_loader_is_refused_naming_it(function: str, words: str, tmp_path: Path) -> None:
    (tmp_path / "loaders.py").write_text(LOADERS)
    target = f"{tmp_path}/loaders.py:{function}"
    message = refusal(DataSourceConfig(kind="loader", loader=target))
    assert message.startswith(f"loader '{target}'") and words in message, message


def test_a_loader_that_raises_keeps_its_traceback(tmp_path: Path) -> None:
    (tmp_path / "loaders.py").write_text(LOADERS)
    with pytest.raises(DatasetError) as caught:
        load_source(DataSourceConfig(kind="loader", loader=f"{tmp_path}/loaders.py:boom"), seed=0)
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("fmtune_no_such_module:load", "no module named 'fmtune_no_such_module'"),
        ("fmtune.no_such_module:load", "no module named 'fmtune.no_such_module'"),
        ("nowhere/loaders.py:load", "no such file nowhere/loaders.py"),
        ("{tmp}/broken.py:load", "importing {tmp}/broken.py raised ZeroDivisionError"),
        ("{tmp}/needs.py:load", "importing {tmp}/needs.py raised ModuleNotFoundError"),
    ],
)
def test_a_loader_that_cannot_be_imported_is_named(target: str, words: str, tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("1 / 0\n")
    (tmp_path / "needs.py").write_text("import fmtune_absent_dependency\n")
    target, words = target.format(tmp=tmp_path), words.format(tmp=tmp_path)
    message = refusal(DataSourceConfig(kind="loader", loader=target))
    assert message.startswith(f"loader '{target}'") and words in message, message


# --- classes of inputs (property-based) ---

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    labels=hnp.arrays(np.int64, st.integers(4, 30), elements=st.integers(0, 2)),
    bad=st.integers(-(2**40), 2**40).filter(lambda v: not 0 <= v < 3),
    where=st.data(),
)
def test_any_label_out_of_range_is_named_by_its_index(labels: np.ndarray, bad: int, where: st.DataObject) -> None:
    labels = np.concatenate([[0, 0, 1, 1, 2, 2], labels])  # every class has its two training images
    index = where.draw(st.integers(0, len(labels) - 1))
    labels[index] = bad
    first_bad = int(np.flatnonzero((labels < 0) | (labels >= 3))[0])
    with tempfile.TemporaryDirectory() as tmp:
        x = np.zeros((len(labels), 5, 5), np.uint8)
        changes = {"x_train": x, "y_train": labels, "class_names": np.array(list("abc"))}
        path = write_npz(Path(tmp) / "data.npz", changes)
        assert f"y_train[{first_bad}] is {bad}" in refusal(DataSourceConfig(kind="npz", path=path))


DTYPES = st.sampled_from([np.uint8, np.int8, np.int16, np.uint16, np.int64, np.float32, np.float64, np.bool_])
# Any shape, or one of an image batch (N, H, W[, C]) with enough images for both classes.
SHAPES = hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=4) | st.tuples(
    st.integers(4, 6), st.integers(1, 5), st.integers(1, 5)
).flatmap(lambda s: st.just(s) | st.sampled_from([1, 2, 3, 4]).map(lambda c: (*s, c)))


@st.composite
def image_arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays of any dtype and shape; integer ones half the time within 0..255."""
    dtype, shape = np.dtype(draw(DTYPES)), draw(SHAPES)
    in_range = dtype.kind in "iu" and draw(st.booleans())
    return draw(hnp.arrays(dtype, shape, elements=st.integers(0, min(255, np.iinfo(dtype).max)) if in_range else None))


@PROPERTY
@given(x=image_arrays())
def test_any_npz_image_array_loads_as_uint8_or_is_refused_naming_its_key(x: np.ndarray) -> None:
    count = x.shape[0]
    arrays = {"x_train": x, "y_train": np.arange(count) % 2, "x_test": x, "y_test": np.arange(count) % 2}
    with tempfile.TemporaryDirectory() as tmp:
        path = write_npz(Path(tmp) / "data.npz", arrays)
        try:
            ds = load_source(DataSourceConfig(kind="npz", path=path), seed=0)
        except DatasetError as exc:
            assert type(exc) is DatasetError
            assert re.search(r"\b[xy]_train\b", str(exc)), str(exc)
            return
    assert ds.train.images.dtype == np.uint8 and ds.input_shape in {x.shape[1:3], x.shape[1:]}
    assert len(ds.input_shape) == 2 or ds.input_shape[-1] == 3
    assert np.array_equal(ds.test.images.reshape(x.shape), x)


MAGIC = (b"\x89PNG", b"\xff\xd8", b"BM", b"GIF8")


@PROPERTY
@given(blob=st.binary(max_size=300))
def test_random_bytes_in_a_class_folder_are_named(blob: bytes) -> None:
    assume(not blob.startswith(MAGIC))
    with tempfile.TemporaryDirectory() as tmp:
        root = folder(Path(tmp) / "images")
        (root / "b" / "junk.png").write_bytes(blob)
        assert str(root / "b" / "junk.png") in from_folder(root)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


@PROPERTY
@given(cut=st.integers(1, len(png_bytes()) - 1), tail=st.binary(max_size=40))
def test_a_damaged_png_loads_or_is_named(cut: int, tail: bytes) -> None:
    """A real PNG cut short, with or without garbage after the cut: where Pillow can still read
    all of its pixels it loads; otherwise the error is a DatasetError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        root = folder(Path(tmp) / "images")
        (root / "a" / "cut.png").write_bytes(png_bytes()[:cut] + tail)
        try:
            load_source(DataSourceConfig(kind="folder", path=root), seed=0)
        except DatasetError as exc:
            assert type(exc) is DatasetError and str(root / "a" / "cut.png") in str(exc), str(exc)
