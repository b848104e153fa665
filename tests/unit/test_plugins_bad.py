"""The bad-plugin corpus: each way a model plugin can be wrong, written into tmp_path, is refused
by the pre-flight check with a PluginError (not another exception) whose one-line message starts
with the plugin's name and says what is wrong: it cannot be found or imported, it is not a builder,
building raises, or the model it builds cannot train on the data (input, output, loss, metric).
Both forms are covered, ``path/to/file.py:attr`` and ``package.module:attr``; property-based cases
cover random plugin names, class counts against output widths, and image shapes."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmtune import text
from fmtune.config import Objective, SearchConfig
from fmtune.data import DataSourceConfig, load_source
from fmtune.models import plugins
from fmtune.models.checks import check, check_search
from fmtune.models.plugins import PluginError
from fmtune.text import one_line

PACKAGE = "fmtune_plugin_corpus"
IMAGES = np.zeros((2, 8, 8), np.uint8)  # grayscale 8x8, as the digits are
CLASSES = 3

PLUGINS = """
import keras
import keras_tuner as kt

NOT_A_PLUGIN = 3


class NotAHyperModel:
    def build(self, hp):
        return None


def mlp(shape, width, compiled=True, metrics=("accuracy",), loss="sparse_categorical_crossentropy"):
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
         keras.layers.Dense(4, activation="relu"), keras.layers.Dense(width, activation="softmax")]
    )
    if compiled:
        model.compile("adam", loss, metrics=list(metrics))
    return model


def good(hp, input_shape, num_classes):
    return mlp(input_shape, num_classes)


def raises(hp):
    raise ValueError("units must be positive")


def exits(hp):
    raise SystemExit(2)


def bad_space(hp):
    hp.Int("units", 64, 8)
    return mlp((8, 8), 3)


def returns_none(hp, input_shape, num_classes):
    mlp(input_shape, num_classes)


def returns_dict(hp, input_shape, num_classes):
    return {"model": mlp(input_shape, num_classes)}


def not_compiled(hp, input_shape, num_classes):
    return mlp(input_shape, num_classes, compiled=False)


def fixed_shape(hp, num_classes):
    return mlp((28, 28), num_classes)


def rgb(hp, num_classes):
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
         keras.layers.Dense(num_classes, activation="softmax")]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def ten_outputs(hp, input_shape):
    return mlp(input_shape, 10)


def two_heads(hp, input_shape, num_classes):
    inputs = keras.Input(input_shape)
    flat = keras.layers.Flatten()(inputs)
    heads = [keras.layers.Dense(num_classes, activation="softmax")(flat) for _ in range(2)]
    model = keras.Model(inputs, heads)
    model.compile("adam", ["sparse_categorical_crossentropy"] * 2, metrics=[["accuracy"], ["accuracy"]])
    return model


def other_metric(hp, input_shape, num_classes):
    return mlp(input_shape, num_classes, metrics=("sparse_categorical_accuracy",))


def no_metrics(hp, input_shape, num_classes):
    return mlp(input_shape, num_classes, metrics=())


def one_hot_loss(hp, input_shape, num_classes):
    return mlp(input_shape, num_classes, loss="categorical_crossentropy")


def no_loss(hp, input_shape, num_classes):
    model = mlp(input_shape, num_classes, compiled=False)
    model.compile("adam", metrics=["accuracy"])
    return model


class Refuses(kt.HyperModel):
    def __init__(self, num_classes):
        super().__init__()
        if num_classes < 10:
            raise ValueError(f"needs 10 classes, got {num_classes}")


BUILT = mlp((8, 8), 3)
"""

# attribute -> words the message must hold, after "<plugin name>: "
BUILD_CASES: dict[str, str] = {
    "nothing": "has no attribute 'nothing'",
    "NOT_A_PLUGIN": "an int, not a build_model(hp) function or a keras_tuner.HyperModel",
    "NotAHyperModel": "the class NotAHyperModel is not a keras_tuner.HyperModel",
    "BUILT": "a keras.Model, built once",
    "Refuses": "making Refuses() raised ValueError: needs 10 classes, got 3",
    "raises": "building the model raised ValueError: units must be positive",
    "exits": "building the model raised SystemExit: 2",
    "bad_space": "building the model raised ValueError",
    "returns_none": "the builder returned a NoneType, not a keras.Model (does the builder end with 'return model'?)",
    "returns_dict": "the builder returned a dict, not a keras.Model",
    "not_compiled": "the model is not compiled",
    "fixed_shape": "the model does not take the data's images (uint8, 8x8): ValueError",
    "rgb": "the model does not take the data's images (uint8, 8x8): ValueError: ",
    "ten_outputs": "the model's output has shape (10,) per image, but the data has 3 classes",
    "two_heads": "the model has 2 outputs; it must have one",
    "other_metric": "needs a metric named 'accuracy', but the model reports loss, sparse_categorical_accuracy",
    "no_metrics": "needs a metric named 'accuracy', but the model reports loss",
    "one_hot_loss": "the model's loss does not take the data's labels (integers from 0 to 2)",
    "no_loss": "the model's loss does not take the data's labels",
}


def refusal(name: str, images: np.ndarray = IMAGES, classes: int = CLASSES, metric: str | None = "accuracy") -> str:
    with pytest.raises(PluginError) as caught:
        check(name, images, classes, metric=metric)
    assert type(caught.value) is PluginError
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and "\n" not in message, message
    return message


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package of plugins on sys.path (``fmtune_plugin_corpus.models:attr``), forgotten afterwards."""
    root = tmp_path / "site" / PACKAGE
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "models.py").write_text(PLUGINS)
    (root / "broken.py").write_text("raise RuntimeError('no GPU here')\n")
    (root / "needs.py").write_text("import fmtune_absent_dependency\n")
    (root / "script.py").write_text("import sys\nsys.exit('usage: script.py DATA_DIR')\n")
    (root / "lazy.py").write_text("def __getattr__(name):\n    raise KeyError(name)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield root
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "plugins.py"
    path.write_text(PLUGINS)
    return path


@pytest.mark.parametrize("attr", sorted(BUILD_CASES))
def test_a_bad_builder_in_a_file_is_refused_naming_the_problem(attr: str, plugin_file: Path) -> None:
    assert BUILD_CASES[attr] in refusal(f"{plugin_file}:{attr}")


@pytest.mark.parametrize("attr", sorted(BUILD_CASES))
def test_a_bad_builder_in_a_module_is_refused_naming_the_problem(attr: str, package: Path) -> None:
    assert BUILD_CASES[attr] in refusal(f"{PACKAGE}.models:{attr}")


def test_the_corpus_good_builder_passes_in_both_forms(plugin_file: Path, package: Path) -> None:
    for name in (f"{plugin_file}:good", f"{PACKAGE}.models:good"):
        model = check(name, IMAGES, CLASSES, metric="accuracy")
        assert isinstance(model, keras.Model) and model.outputs[0].shape[-1] == CLASSES


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("fmtune_no_such_plugin:build_model", "no module named 'fmtune_no_such_plugin' (is it on PYTHONPATH?)"),
        (f"{PACKAGE}.absent:build_model", f"no module named '{PACKAGE}.absent'"),
        (f"{PACKAGE}.needs:build_model", "raised ModuleNotFoundError: No module named 'fmtune_absent_dependency'"),
        (f"{PACKAGE}.broken:build_model", f"importing {PACKAGE}.broken raised RuntimeError: no GPU here"),
        (f"{PACKAGE}.script:build_model", "raised SystemExit: usage: script.py DATA_DIR"),
        (f"{PACKAGE}.lazy:build_model", "getting build_model from fmtune_plugin_corpus.lazy raised KeyError"),
        ("build_model", "expected 'package.module:attr', 'path/to/file.py:attr' or 'pickle:path/to/model.pkl'"),
        (f"{PACKAGE}.models:", "expected 'package.module:attr'"),
    ],
)
def test_a_module_that_cannot_be_imported_is_named(name: str, words: str, package: Path) -> None:
    assert words in refusal(name)


@pytest.mark.parametrize(
    ("file", "source", "words"),
    [
        ("missing.py", None, "no such file {path}"),
        ("broken.py", "1 / 0\n", "importing {path} raised ZeroDivisionError: division by zero"),
        ("syntax.py", "def build_model(hp:\n", "importing {path} raised SyntaxError"),
        ("needs.py", "import fmtune_absent_dependency\n", "No module named 'fmtune_absent_dependency'"),
        ("script.py", "raise SystemExit(2)\n", "importing {path} raised SystemExit: 2"),
        ("long.py", "raise ValueError('first line\\n' + 'x' * 1000)\n", "raised ValueError: first line xxx"),
    ],
)
def test_a_file_that_cannot_be_imported_is_named(file: str, source: str | None, words: str, tmp_path: Path) -> None:
    path = tmp_path / file
    if source is not None:
        path.write_text(source)
    message = refusal(f"{path}:build_model")
    assert words.format(path=path) in message and len(message) < 2 * text.MAX_REASON + len(str(path)), message


def test_a_pickled_plugin_is_named_when_missing_or_unreadable(tmp_path: Path) -> None:
    assert f"no such file {tmp_path / 'gone.pkl'}" in refusal(f"pickle:{tmp_path / 'gone.pkl'}")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    assert f"unpickling {tmp_path / 'junk.pkl'} raised UnpicklingError" in refusal(f"pickle:{tmp_path / 'junk.pkl'}")
    (tmp_path / "int.pkl").write_bytes(pickle.dumps(3))
    assert "an int, not a build_model(hp) function" in refusal(f"pickle:{tmp_path / 'int.pkl'}")


def test_a_pickled_plugin_is_refused_where_pods_cannot_read_it() -> None:
    plugins.portable(None)
    plugins.portable("examples/grid_dense.py:build_model")
    with pytest.raises(PluginError, match="the code must be importable in the pods: an image FROM fmtune's"):
        plugins.portable("pickle:runs/nb/hypermodel.pkl")


# --- through check_search: the objective decides the metric ---


@pytest.fixture
def dataset(tmp_path: Path) -> Any:
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    labels = np.arange(12) % CLASSES
    np.savez(path, x_train=rng.integers(0, 256, (12, 8, 8), dtype=np.uint8), y_train=labels, x_test=IMAGES,
             y_test=np.arange(2))  # fmt: skip
    return load_source(DataSourceConfig(kind="npz", path=path), seed=0)


def test_check_search_checks_the_objectives_metric(plugin_file: Path, dataset: Any) -> None:
    check_search(SearchConfig(hypermodel=f"{plugin_file}:good"), dataset)
    with pytest.raises(PluginError, match="needs a metric named 'accuracy'"):
        check_search(SearchConfig(hypermodel=f"{plugin_file}:no_metrics"), dataset)
    by_loss = SearchConfig(
        hypermodel=f"{plugin_file}:no_metrics", objective=Objective(name="val_loss", direction="min")
    )
    check_search(by_loss, dataset)
    with pytest.raises(PluginError, match=r"the model's output has shape \(10,\) per image, but the data has 3"):
        check_search(SearchConfig(hypermodel=f"{plugin_file}:ten_outputs"), dataset)


def test_check_search_refuses_an_rgb_model_on_grayscale_data(plugin_file: Path, dataset: Any) -> None:
    with pytest.raises(PluginError, match=r"uint8, 8x8\): ValueError: .*Expected shape \(None, 8, 8, 3\)"):
        check_search(SearchConfig(hypermodel=f"{plugin_file}:rgb"), dataset)


# --- classes of inputs (property-based) ---

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
PIECES = st.sampled_from(
    ["fmtune", "fmtune.models.families", "keras", "os", "sys", "json", ".", "..", "/", ".py", ":", "MLP", "CNN",
     "build_model", "__init__", "__name__", "__dict__", "path", "\x00", " ", "é", "pickle:", "tmp", "-", "1"]
)  # fmt: skip
NAMES = st.text(max_size=30) | st.lists(PIECES, max_size=6).map("".join)


@PROPERTY
@given(name=NAMES)
def test_any_plugin_name_loads_or_is_refused_with_a_plugin_error(name: str) -> None:
    try:
        found = plugins.hypermodel(name, (8, 8), CLASSES)
    except PluginError as exc:
        assert type(exc) is PluginError and "\n" not in str(exc)
        return
    assert isinstance(found, kt.HyperModel)


def softmax_of_width(width: int) -> Any:
    def build_model(hp: kt.HyperParameters, input_shape: tuple[int, ...]) -> keras.Model:
        model = keras.Sequential(
            [keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(width, activation="softmax")]
        )
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    return build_model


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis -1")  # width 1: the case in point
@settings(PROPERTY, max_examples=25)
@given(classes=st.integers(2, 12), width=st.integers(1, 12))
def test_an_output_width_other_than_the_class_count_is_named(classes: int, width: int) -> None:
    name = f"widths.py:softmax_{width}"
    if width == classes:
        check(name, IMAGES, classes, metric="accuracy", found=softmax_of_width(width))
        return
    with pytest.raises(PluginError) as caught:
        check(name, IMAGES, classes, metric="accuracy", found=softmax_of_width(width))
    assert f"output has shape ({width},) per image, but the data has {classes} classes" in str(caught.value)
    assert f"Dense({classes}, activation='softmax')" in str(caught.value)


@settings(PROPERTY, max_examples=15)
@given(
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12))
    | st.tuples(st.integers(1, 6), st.integers(1, 6), st.just(3))
)
def test_a_builder_that_takes_input_shape_fits_any_image_shape(shape: tuple[int, ...]) -> None:
    images = np.full((2, *shape), 7, np.uint8)
    model = check("shapes.py:build_model", images, CLASSES, metric="accuracy", found=softmax_of_width(CLASSES))
    assert tuple(model.inputs[0].shape) == (None, *shape)


def test_one_line_keeps_what_keras_says_and_drops_the_rest() -> None:
    keras_error = ValueError(
        "Exception encountered when calling Sequential.call().\n\n\x1b[1mInvalid input shape for input "
        "[[[0. 0.]\n  [0. 0.]]] with name 'x'. Expected shape (None, 8, 8, 3)\x1b[0m\n\nArguments received:\n  • x"
    )
    assert (
        one_line(keras_error)
        == "ValueError: Invalid input shape for input ... with name 'x'. Expected shape (None, 8, 8, 3)"
    )
    assert one_line(SystemExit()) == "SystemExit"
    assert len(one_line(RuntimeError("y" * 5000))) == len("RuntimeError: ") + text.MAX_REASON
