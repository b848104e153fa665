import itertools
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pytest

from fmtune import config, data
from fmtune.config import SearchConfig
from fmtune.layout import ExperimentDir
from fmtune.models.families import FAMILIES
from fmtune.models.plugins import build_from_values
from fmtune.run.tuner import FmtuneTuner
from fmtune.spaces import DEFAULTS

from ..conftest import SYNTHETIC


@pytest.fixture(scope="module")
def tiny(synthetic_dir: Path) -> data.Dataset:
    return data.load(SYNTHETIC, synthetic_dir, download=False)


@pytest.mark.parametrize("family", sorted(DEFAULTS))
def test_each_family_trains_a_step_on_uint8_images(family: str, tiny: data.Dataset) -> None:
    hm = FAMILIES[family]()
    hp = kt.HyperParameters()
    model = hm.build(hp)
    assert model.inputs[0].dtype == "uint8" and tuple(model.inputs[0].shape) == (None, 28, 28)
    assert set(DEFAULTS[family]) <= {name.rsplit("_", 1)[0] if name[-1].isdigit() else name for name in hp.values}
    history = hm.fit(hp, model, tiny.train.images[:64], tiny.train.labels[:64], epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    probabilities = model.predict(tiny.test.images[:3], verbose=0)
    assert probabilities.shape == (3, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("family", sorted(DEFAULTS))
@pytest.mark.parametrize(("shape", "classes"), [((8, 8), 10), ((32, 32, 3), 3), ((12, 20, 1), 2)])
def test_each_family_takes_any_image_shape_and_class_count(family: str, shape: tuple[int, ...], classes: int) -> None:
    hp = kt.HyperParameters()
    model = FAMILIES[family](input_shape=shape, num_classes=classes).build(hp)
    assert tuple(model.inputs[0].shape) == (None, *shape) and model.inputs[0].dtype == "uint8"
    images = np.random.default_rng(0).integers(0, 256, (2, *shape), dtype=np.uint8)
    assert model.predict(images, verbose=0).shape == (2, classes)


def test_mlp_depth_follows_num_layers() -> None:
    values = {
        "num_layers": 3,
        "units_0": 64,
        "units_1": 128,
        "units_2": 192,
        "dropout_0": 0.1,
        "dropout_1": 0.2,
        "dropout_2": 0.3,
        "learning_rate": 1e-3,
        "batch_size": 32,
    }
    model, hp = build_from_values(SearchConfig(), values, (28, 28), 10)
    dense = [layer.units for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert dense == [64, 128, 192, 10]
    assert hp.get("batch_size") == 32


def test_overrides_narrow_the_space() -> None:
    cfg = config.load(
        "quick", None, ["search.hyperparameters.units=[96]", "search.hyperparameters.num_layers=1"], environ={}
    )
    hp = kt.HyperParameters()
    FAMILIES["mlp"](cfg.search.hyperparameters).build(hp)
    assert hp.values["units_0"] == 96 and hp.values["num_layers"] == 1
    assert "units_1" not in hp.values  # layers that can never be active are not declared


def test_grid_enumerates_exactly_the_declared_grid(tiny: data.Dataset, tmp_path: Path) -> None:
    grid = {"units": [16, 32], "dropout": [0.1, 0.3], "learning_rate": [0.001, 0.01]}
    cfg = config.load(
        None,
        None,
        [
            "search.family=mlp",
            "search.algorithm=grid",
            "search.max_trials=50",
            "search.epochs=1",
            "search.hyperparameters.num_layers=1",
            "search.hyperparameters.batch_size=128",
            *(f"search.hyperparameters.{k}={v}" for k, v in grid.items()),
        ],
        environ={},
    )
    tuner = FmtuneTuner(cfg, tiny, tmp_path)
    tuner.search(
        tiny.train.images[:200],
        tiny.train.labels[:200],
        validation_data=(tiny.val.images, tiny.val.labels),
        epochs=1,
        verbose=0,
    )
    seen = sorted(
        (
            t.hyperparameters.values["units_0"],
            t.hyperparameters.values["dropout_0"],
            t.hyperparameters.values["learning_rate"],
        )
        for t in tuner.oracle.trials.values()
    )
    assert seen == sorted(itertools.product(grid["units"], grid["dropout"], grid["learning_rate"]))
    assert all(t.status == "COMPLETED" for t in tuner.oracle.trials.values())


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "hyperband"])
def test_each_algorithm_searches(algorithm: str, tiny: data.Dataset, tmp_path: Path) -> None:
    cfg = config.load(
        None,
        None,
        [
            f"search.algorithm={algorithm}",
            "search.max_trials=4",
            "search.epochs=3",
            "search.hyperband_factor=3",
            "search.hyperparameters.units=[16, 32]",
            "search.hyperparameters.num_layers=1",
            "search.hyperparameters.batch_size=64",
            f"workdir={tmp_path}",
        ],
        environ={},
    )
    tuner = FmtuneTuner(cfg, tiny, ExperimentDir(cfg.experiment_dir).worker("tuner0"), checkpoints=True)
    tuner.search(
        tiny.train.images[:200],
        tiny.train.labels[:200],
        validation_data=(tiny.val.images, tiny.val.labels),
        epochs=3,
        verbose=0,
    )
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 4 and all(t.status == "COMPLETED" and t.score is not None for t in trials)
    if algorithm == "hyperband":
        # Later brackets continue earlier trials for more epochs, from their saved weights.
        continued = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
        assert continued
        for trial in continued:
            steps = [obs.step for obs in trial.metrics.get_history("val_accuracy")]
            assert steps[0] == trial.hyperparameters.values["tuner/initial_epoch"] > 0


@pytest.mark.parametrize("family", sorted(DEFAULTS))
def test_mixed_bfloat16_computes_in_bfloat16_and_answers_in_float32(family: str, tiny: data.Dataset) -> None:
    hm = FAMILIES[family](precision="mixed_bfloat16")
    hp = kt.HyperParameters()
    model = hm.build(hp)
    computing = {layer.compute_dtype for layer in model.layers if layer.weights and layer.name != "probabilities"}
    assert computing == {"bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}  # the weights stay float32
    assert model.get_layer("probabilities").compute_dtype == "float32"
    hm.fit(hp, model, tiny.train.images[:64], tiny.train.labels[:64], epochs=1, steps_per_epoch=1, verbose=0)
    assert model.predict(tiny.test.images[:3], verbose=0).dtype == np.float32
    assert FAMILIES[family]().build(kt.HyperParameters()).layers[2].compute_dtype == "float32"  # left as it was
