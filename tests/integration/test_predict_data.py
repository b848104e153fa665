"""Where `fmtune predict --sample` finds its test images, and what it says when it finds none."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fmtune.predict import Request, where_to_look

from ..conftest import SYNTHETIC
from .helpers import run


def request(workdir: Path, **fields: object) -> Request:
    return Request(target="localhost:8500", model_name="fmtune", images=[], sample=3, workdir=workdir, **fields)


def test_the_latest_experiment_says_where_the_data_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMTUNE_DATA_DIR", raising=False)
    runs = tmp_path / "runs"
    for name, dataset, data_dir in (("old", "mnist", "/data/old"), ("new", SYNTHETIC, "/data/new")):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.yaml").write_text(f"name: {name}\ndataset: {dataset}\ndata_dir: {data_dir}\n")
    (runs / "new" / "results.json").write_text("{}")
    os.utime(runs / "old" / "config.yaml", (1e9, 1e9))  # "new" finished last
    assert where_to_look(request(runs)) == (SYNTHETIC, Path("/data/new"))
    # Another dataset than the experiment's: its data dir is not the right one.
    assert where_to_look(request(runs, dataset="fashion_mnist")) == ("fashion_mnist", None)
    assert where_to_look(request(runs, data_dir=Path("/mine"))) == (SYNTHETIC, Path("/mine"))
    monkeypatch.setenv("FMTUNE_DATA_DIR", "/env")
    assert where_to_look(request(runs)) == (SYNTHETIC, Path("/env"))
    assert where_to_look(request(tmp_path / "nothing")) == ("fashion_mnist", Path("/env"))


def test_predict_without_data_says_how_to_point_at_it(tmp_path: Path) -> None:
    """No flag, no environment, no experiment, nothing in the usual places: the error says what to do."""
    environ = {"KERAS_HOME": str(tmp_path / "keras"), "FMTUNE_DATA_DIR": ""}
    argv = [sys.executable, "-m", "fmtune", "predict", "--sample", "3", "--dataset", "mnist"]
    done = run([*argv, "--workdir", str(tmp_path / "runs")], tmp_path, extra_env=environ)
    assert done.returncode == 1
    message = " ".join(done.stderr.split())
    assert "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message and "train-" not in message
    assert "--data-dir DIR or FMTUNE_DATA_DIR=DIR" in message
