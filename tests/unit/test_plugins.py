"""How a plugin is called: a HyperModel's own ``fit`` is honoured in a real trial (it tunes the
batch size), a function gets the data's shape and class count when it asks for them and only
``hp`` when it does not, a HyperModel instance is used as it is, and a pickled plugin (what
``fmtune.tune()`` ships from a notebook) loads like an imported one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import cloudpickle
import keras
import keras_tuner as kt
import numpy as np

from fmtune import config
from fmtune.models import plugins
from fmtune.run.tuner import FmtuneTuner

from ..conftest import REPO_ROOT

BATCH_SIZE_MLP = f"{REPO_ROOT / 'examples' / 'bayesian_mlp.py'}:BatchSizeMLP"
TRAIN = 200  # steps per epoch: 7 at batch size 32, 4 at 64, 2 at 128


class Steps(keras.callbacks.Callback):
    """Counts each fit's training batches; Keras Tuner deep-copies callbacks per trial, so the
    counts live on the class."""

    counts: ClassVar[list[int]] = []

    def on_train_begin(self, logs: Any = None) -> None:
        Steps.counts.append(0)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        Steps.counts[-1] += 1


def tiny_npz(path: Path, train: int = TRAIN, classes: int = 3) -> Path:
    rng = np.random.default_rng(0)
    labels = np.arange(train) % classes
    images = rng.integers(0, 60, (train, 8, 8), dtype=np.uint8)
    images[np.arange(train), labels, :] = 250  # a bright row per class: learnable
    np.savez(path, x_train=images, y_train=labels, x_test=images[:30], y_test=labels[:30])
    return path


def test_a_hypermodels_fit_chooses_the_batch_size_a_trial_trains_with(tmp_path: Path) -> None:
    cfg = config.load(
        None,
        None,
        [
            f"search.hypermodel={BATCH_SIZE_MLP}",
            "search.algorithm=random",
            "search.max_trials=4",
            "search.epochs=1",
            "search.early_stopping_patience=0",
            "data.kind=npz",
            f"data.path={tiny_npz(tmp_path / 'tiny.npz')}",
            "data.val_fraction=0.2",
            f"workdir={tmp_path}",
        ],
        environ={},
    )
    dataset = cfg.load_dataset()
    train = dataset.train
    Steps.counts.clear()
    tuner = FmtuneTuner(cfg, dataset, tmp_path / "tuner")
    tuner.search(
        train.images,
        train.labels,
        validation_data=(dataset.val.images, dataset.val.labels),
        epochs=1,
        callbacks=[Steps()],
        verbose=0,
    )
    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 4 and all(t.status == "COMPLETED" for t in trials)
    chosen = [t.hyperparameters.values["batch_size"] for t in trials]
    assert len(set(chosen)) > 1, chosen  # else the test could not tell a tuned batch size from a fixed one
    assert Steps.counts == [math.ceil(len(train) / size) for size in chosen]


BUILDERS = """
import keras

CALLS = []


def model(shape, classes):
    layers = [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(classes, activation="softmax")]
    m = keras.Sequential(layers)
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def both(hp, input_shape, num_classes):
    CALLS.append(("both", input_shape, num_classes))
    return model(input_shape, num_classes)


def classes_only(hp, num_classes=10):
    CALLS.append(("classes_only", num_classes))
    return model((5, 7), num_classes)


def hp_only(hp):
    CALLS.append(("hp_only",))
    return model((5, 7), 4)


def anything(hp, **kwargs):
    CALLS.append(("anything", kwargs))
    return model(kwargs["input_shape"], kwargs["num_classes"])
"""


def test_a_function_gets_the_datas_shape_and_classes_only_when_it_asks(tmp_path: Path) -> None:
    (tmp_path / "builders.py").write_text(BUILDERS)
    expected = {
        "both": ("both", (5, 7), 4),
        "classes_only": ("classes_only", 4),
        "hp_only": ("hp_only",),
        "anything": ("anything", {"input_shape": (5, 7), "num_classes": 4}),
    }
    for attr, call in expected.items():
        hm = plugins.hypermodel(f"{tmp_path / 'builders.py'}:{attr}", (5, 7), 4)
        model = hm.build(kt.HyperParameters())
        assert isinstance(hm, plugins.FunctionHyperModel)
        assert hm.build_model.__globals__["CALLS"][-1] == call
        assert tuple(model.inputs[0].shape) == (None, 5, 7) and model.outputs[0].shape[-1] == 4


def test_a_hypermodel_class_gets_the_data_and_an_instance_is_used_as_it_is(tmp_path: Path) -> None:
    built = plugins.hypermodel(BATCH_SIZE_MLP, (8, 8), 3)
    assert built.input_shape == (8, 8) and built.num_classes == 3
    (tmp_path / "instance.py").write_text(
        "import keras_tuner as kt\n"
        "class Fixed(kt.HyperModel):\n"
        "    def __init__(self, input_shape, num_classes):\n"
        "        super().__init__()\n"
        "        self.input_shape, self.num_classes = input_shape, num_classes\n"
        "INSTANCE = Fixed((6, 6), 2)\n"
    )
    name = f"{tmp_path / 'instance.py'}:INSTANCE"
    loaded = plugins.hypermodel(name, (8, 8), 3)
    assert type(loaded).__name__ == "Fixed" and (loaded.input_shape, loaded.num_classes) == ((6, 6), 2)
    instance = plugins.load_attr(name)
    assert plugins.hypermodel("any:name", (8, 8), 3, found=instance) is instance  # not remade for the data


def test_a_pickled_function_or_hypermodel_loads_like_an_imported_one(tmp_path: Path) -> None:
    units = 12

    def build_model(hp: kt.HyperParameters, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        model = keras.Sequential(
            [
                keras.Input(input_shape),
                keras.layers.Flatten(),
                keras.layers.Dense(hp.Int("units", 4, units)),
                keras.layers.Dense(num_classes, activation="softmax"),
            ]
        )
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    (tmp_path / "fn.pkl").write_bytes(cloudpickle.dumps(build_model))
    hp = kt.HyperParameters()
    model = plugins.hypermodel(f"pickle:{tmp_path / 'fn.pkl'}", (8, 8), 3).build(hp)
    assert hp.get("units") == 4 and model.outputs[0].shape[-1] == 3
    (tmp_path / "hm.pkl").write_bytes(cloudpickle.dumps(plugins.hypermodel(BATCH_SIZE_MLP, (8, 8), 5)))
    loaded = plugins.hypermodel(f"pickle:{tmp_path / 'hm.pkl'}", (2, 2), 2)
    assert isinstance(loaded, kt.HyperModel) and loaded.num_classes == 5  # an instance, as it was pickled
