"""`fmtune tune` on bad inputs, as a user runs it: a model plugin or a dataset that cannot work
stops the command before it writes or starts anything, with exit code 2 and one error line naming
the plugin, file, class folder, array key or loader at fault.

A representative few of each corpus (tests/unit/test_plugins_bad.py and test_data_sources_bad.py
hold the rest): each case is a process that imports TensorFlow."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmtune.run.local import NATIVE_NOISE

from .helpers import run

# TensorFlow's native start-up lines, which its log level does not silence.
NOISE = ("To enable the following instructions",)


def png(path: Path, value: int = 0, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (8, 8), value).save(path)
    return path


def folder(root: Path) -> Path:
    for cls in ("a", "b", "c"):
        for n in range(4):
            png(root / cls / f"{n}.png", value=60 * n)
    return root


PLUGIN = """
import keras


def ten_outputs(hp, input_shape):
    layers = [keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    model = keras.Sequential(layers)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
"""
LOADER = "def load():\n    raise ConnectionError('the bucket is gone')\n"


# --- each case lays out its inputs in tmp_path: (--hypermodel, --data, words the error line holds) ---


def missing_module(tmp: Path) -> tuple[str, str, str]:
    return "fmtune_no_such_plugin:build_model", str(folder(tmp / "images")), "no module named 'fmtune_no_such_plugin'"


def output_width(tmp: Path) -> tuple[str, str, str]:
    (tmp / "plugin.py").write_text(PLUGIN)
    name = f"{tmp / 'plugin.py'}:ten_outputs"
    return (
        name,
        str(folder(tmp / "images")),
        f"{name}: the model's output has shape (10,) per image, but the data has 3",
    )


def corrupt_png(tmp: Path) -> tuple[str, str, str]:
    root = folder(tmp / "images")
    (root / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return "", str(root), str(root / "b" / "2.png")


def empty_class(tmp: Path) -> tuple[str, str, str]:
    root = folder(tmp / "images")
    (root / "d").mkdir()
    return "", str(root), "class folder 'd' has no images"


def mixed_channels(tmp: Path) -> tuple[str, str, str]:
    root = folder(tmp / "images")
    png(root / "c" / "colour.png", mode="RGB")
    return "", str(root), "c/colour.png is colour"


def label_out_of_range(tmp: Path) -> tuple[str, str, str]:
    path = tmp / "tiny.npz"
    x = np.zeros((9, 8, 8), np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(9) % 3, x_test=x[:3], y_test=np.array([0, 1, 3]))
    return "", str(path), "y_test[2] is 3: labels must be in [0, 3)"


def loader_raises(tmp: Path) -> tuple[str, str, str]:
    (tmp / "loaders.py").write_text(LOADER)
    target = f"{tmp / 'loaders.py'}:load"
    return "", target, f"loader '{target}' raised ConnectionError: the bucket is gone"


CASES: dict[str, Callable[[Path], tuple[str, str, str]]] = {
    f.__name__: f
    for f in (missing_module, output_width, corrupt_png, empty_class, mixed_channels, label_out_of_range, loader_raises)
}


def started_processes(marker: str) -> list[str]:
    """Command lines of live processes that name ``marker`` (the run's work dir)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in text and "pytest" not in text:
            found.append(text)
    return found


def refused(case: str, tmp_path: Path, columns: int) -> tuple[str, str]:
    """Run `fmtune tune` on the case's inputs in a terminal ``columns`` wide; (the error line,
    the words it must hold), once it is known that nothing was written or started."""
    hypermodel, data, words = CASES[case](tmp_path)
    work = tmp_path / "work"
    argv = [sys.executable, "-m", "fmtune", "tune", "--data", data, "--name", "bad", "--workers", "1"]
    argv += ["--workdir", str(work / "runs"), "--model-repo", str(work / "models")]
    if hypermodel:
        argv += ["--hypermodel", hypermodel]
    done = run(argv, cwd=tmp_path, timeout=120, extra_env={"COLUMNS": str(columns)})
    lines = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not NATIVE_NOISE.match(line) and not line.startswith(NOISE)
    ]
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert not work.exists(), sorted(str(p) for p in work.rglob("*"))
    assert "[coordinator]" not in done.stdout and "[tuner0]" not in done.stdout
    assert not started_processes(str(work))
    assert len(lines) == 1, lines
    return lines[0], words


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_input_exits_2_with_one_line_and_leaves_nothing(case: str, tmp_path: Path) -> None:
    line, words = refused(case, tmp_path, columns=1000)
    assert line.startswith("error: ") and words in line, line


def test_the_error_stays_one_line_in_a_narrow_log(tmp_path: Path) -> None:
    line, words = refused("output_width", tmp_path, columns=80)
    assert words in line
