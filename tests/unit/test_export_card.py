"""The card the coordinator exports with comes from the experiment's data: its shape, class names,
background, flip invariance and fingerprint, whatever the dataset (here 6x5 RGB, three classes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from fmtune import config, export, training
from fmtune.data import Dataset, DatasetSpec, Split
from fmtune.results import Results, RetrainRecord
from fmtune.run import coordinator

SHAPE, NAMES = (6, 5, 3), ("cat", "dog", "bird")


def split(count: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (count, *SHAPE), dtype=np.uint8), rng.integers(0, len(NAMES), count))


def test_retrain_and_export_writes_the_datas_card_and_signatures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    spec = DatasetSpec("pets", "pets", NAMES, flip_invariant=True, dark_background=False)
    dataset = Dataset(spec, split(12, 0), split(4, 1), split(10, 2), source="arrays")
    image = keras.Input(SHAPE, dtype="uint8")
    model = keras.Model(image, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(image)))
    record = RetrainRecord(
        hyperparameters={},
        train_samples=12,
        holdout_samples=0,
        epochs_run=1,
        best_epoch=1,
        history=[],
        holdout_metrics={},
        test_loss=1.0,
        test_accuracy=0.5,
        seconds=0.1,
    )

    def retrain(*_: Any) -> tuple[Any, RetrainRecord]:
        return model, record

    monkeypatch.setattr(training, "retrain", retrain)
    cfg = config.load(
        "quick", None, [f"workdir={tmp_path / 'runs'}", f"model_repo={tmp_path / 'models'}", "name=pets"], environ={}
    )
    searched = Results.model_validate(
        {
            "experiment": "pets",
            "dataset": "pets",
            "family": "mlp",
            "algorithm": "random",
            "objective": cfg.search.objective,
            "max_trials": 1,
            "config_digest": cfg.digest(),
            "trials": [],
            "best_trial_id": "0",
            "best_hyperparameters": {},
            "tuning_seconds": 1.0,
        }
    )
    done = coordinator.retrain_and_export(cfg, searched, dataset)
    card = export.read_card(Path(done.export_path or ""))
    assert (card.input_shape, card.class_names, card.fingerprint) == (list(SHAPE), list(NAMES), dataset.fingerprint)
    assert (card.dark_background, card.flip_invariant) == (False, True)
    described = tf.saved_model.load(done.export_path).signatures["fmtune_card"](image=tf.zeros([1, *SHAPE], tf.uint8))
    assert [n.decode() for n in described["class_names"].numpy()] == list(NAMES)
