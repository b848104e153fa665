"""``fmtune.tune()`` before it starts anything: settings as config keys, and inputs that cannot work
refused with the same errors as ``fmtune tune`` gives (nothing written, no process started). The
whole run is tests/integration/test_notebook_api.py."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

import fmtune
from fmtune.config import ConfigError
from fmtune.data import DatasetError
from fmtune.models.plugins import PluginError
from fmtune.notebook import TuneError, _settings

X = np.zeros((12, 8, 8), np.uint8)
Y = np.arange(12) % 3
ARRAYS = (X, Y), (X[:3], Y[:3])


def build_model(hp: Any, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    model = keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes)])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_settings_become_dotted_config_keys() -> None:
    flags, nulls = _settings(
        {
            "search__epochs": 3,
            "retrain": {"max_epochs": 5, "augment": ["shift"]},
            "search": {"asha": {"enabled": False}, "hyperparameters": {"units": {"min": 8, "max": 64}}},
            "search__train_samples": None,
            "fault_tolerance": {},
        }
    )
    assert flags == {
        "search.epochs": 3,
        "retrain.max_epochs": 5,
        "retrain.augment": ["shift"],
        "search.asha.enabled": False,
        "search.hyperparameters.units": {"min": 8, "max": 64},
        "fault_tolerance": {},
    }
    assert nulls == ["search.train_samples"]


def test_import_fmtune_stays_light_and_tune_comes_on_first_use() -> None:
    code = (
        "import sys, fmtune; assert 'fmtune.notebook' not in sys.modules and 'pydantic' not in sys.modules; "
        "from fmtune.notebook import tune; assert fmtune.tune is tune and 'keras' not in sys.modules; "
        "getattr(fmtune, 'nothing', None) is None or sys.exit('fmtune.nothing exists')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def tune(tmp_path: Path, model: Any = build_model, data: Any = ARRAYS, **settings: Any) -> Any:
    return fmtune.tune(
        model, data, budget=None, workers=1, workdir=tmp_path / "runs", model_repo=tmp_path / "models", **settings
    )


def nothing_written(tmp_path: Path) -> bool:
    return not (tmp_path / "runs").exists() and not (tmp_path / "models").exists()


def test_a_model_that_cannot_train_is_refused_naming_the_function(tmp_path: Path) -> None:
    def uncompiled(hp: Any) -> keras.Model:
        return keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(3)])

    with pytest.raises(PluginError, match=r"<locals>\.uncompiled: the model is not compiled"):
        tune(tmp_path, uncompiled)
    assert nothing_written(tmp_path)


def test_a_model_that_cannot_be_pickled_is_refused(tmp_path: Path) -> None:
    lock = threading.Lock()

    def locked(hp: Any) -> keras.Model:
        with lock:
            return build_model(hp, (8, 8), 3)

    with pytest.raises(PluginError, match=r"<locals>\.locked: cannot be pickled for the worker processes"):
        tune(tmp_path, locked)
    assert nothing_written(tmp_path)


def test_bad_arrays_and_settings_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"y_test\[1\] is 7: labels must be in \[0, 3\)"):
        tune(tmp_path, data=((X, Y), (X[:2], np.array([0, 7]))))
    with pytest.raises(ConfigError, match=r"search\.max_trials"):
        tune(tmp_path, search__max_trials=0)
    with pytest.raises(ConfigError, match="no such npz file"):
        tune(tmp_path, data=str(tmp_path / "absent.npz"))
    with pytest.raises(TypeError, match="expected a path"):
        tune(tmp_path, data=[X, Y])
    assert nothing_written(tmp_path)


def test_another_experiment_of_the_same_name_is_not_resumed(tmp_path: Path) -> None:
    existing = tmp_path / "runs" / "taken"
    existing.mkdir(parents=True)
    (existing / "config.yaml").write_text("name: taken\nseed: 1\n")
    with pytest.raises(TuneError, match="pass fresh=True to start over, or another name="):
        tune(tmp_path, name="taken")
    assert [p.name for p in existing.iterdir()] == ["config.yaml"]
