"""``fmtune.tune()`` as a notebook calls it: a model defined inside the caller (so it can only reach
the worker processes by value) and arrays in memory, through the whole local pipeline to an
exported SavedModel and a TuneResult."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import fmtune

from ..datasets import digits_arrays

# Two trials of one epoch, one retraining epoch, no time budget.
SHORT: dict[str, Any] = {
    "search": {"algorithm": "random", "epochs": 1, "early_stopping_patience": 0, "asha": {"enabled": False}},
    "retrain": {"max_epochs": 1, "schedule": "plateau", "holdout_fraction": 0.05},
}


def test_a_function_defined_in_the_caller_is_tuned_and_exported(tmp_path: Path) -> None:
    import keras

    units = [16, 32]  # a closure's cell, shipped with the function

    def build_model(hp: Any, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        model = keras.Sequential(
            [
                keras.Input(input_shape, dtype="uint8"),
                keras.layers.Rescaling(1 / 255),
                keras.layers.Flatten(),
                keras.layers.Dense(hp.Choice("units", units), activation="relu"),
                keras.layers.Dense(num_classes, activation="softmax"),
            ]
        )
        model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    images, labels = digits_arrays()
    data = (images[:600], labels[:600]), (images[600:800], labels[600:800])
    out = io.StringIO()
    result = fmtune.tune(
        build_model,
        data=data,
        budget=None,
        workers=2,
        name="notebook",
        max_trials=2,
        workdir=tmp_path / "runs",
        model_repo=tmp_path / "models",
        out=out,
        **SHORT,
    )
    assert isinstance(result, fmtune.TuneResult), out.getvalue()[-3000:]
    assert result.test_accuracy is not None and 0.0 <= result.test_accuracy <= 1.0
    assert result.best_hyperparameters["units"] in units and result.best_score is not None
    assert result.model_version == 1 and result.model_path == (tmp_path / "models" / "fmtune" / "1").resolve()
    assert (result.model_path / "saved_model.pb").is_file()
    record = result.results()
    assert len(record.trials) == 2 and all(t.status == "COMPLETED" for t in record.trials)
    assert record.family == "build_model (from a notebook)"  # its name in records and logs, not its pickle's path
    assert record.seed is not None  # drawn for the new experiment, and recorded
    config = yaml.safe_load((result.experiment_dir / "config.yaml").read_text())
    pickled = Path(config["search"]["hypermodel"].removeprefix("pickle:"))
    assert config["search"]["hypermodel"].startswith("pickle:") and pickled.parent == result.experiment_dir
    assert pickled.is_file() and config["data"]["kind"] == "npz"
    with np.load(config["data"]["path"]) as saved:
        assert np.array_equal(saved["x_test"], data[1][0])
    assert "[tuner0]" in out.getvalue() and "[tuner1]" in out.getvalue()
