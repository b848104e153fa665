import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fmtune import export
from fmtune.export import ModelCard
from fmtune.hypermodels import build_from_values

VALUES = {"num_layers": 1, "units_0": 16, "dropout_0": 0.1, "learning_rate": 1e-3, "batch_size": 32}


def card(**overrides: object) -> ModelCard:
    fields = {
        "model_name": "clf",
        "dataset": "synthetic",
        "class_names": [str(i) for i in range(10)],
        "family": "mlp",
        "hyperparameters": VALUES,
        "config_digest": "abc",
        "experiment": "t",
    }
    return ModelCard(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return build_from_values("mlp", VALUES)[0]


def test_publish_writes_contracted_signature_and_card(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    version, path = export.publish(model, tmp_path, card())
    assert (version, path) == (1, tmp_path / "clf" / "1")
    assert (path / "saved_model.pb").is_file()
    saved = json.loads((path / export.CARD_FILE).read_text())
    assert saved["version"] == 1 and saved["class_names"][3] == "3"

    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    (spec,) = fn.structured_input_signature[1].values()
    assert (spec.name, spec.dtype, spec.shape.as_list()) == ("image", tf.uint8, [None, 28, 28])
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    out = fn(image=tf.constant(images))
    assert out["probabilities"].dtype == tf.float32 and out["probabilities"].shape == (4, 10)
    assert out["class_id"].dtype == tf.int64 and out["class_id"].shape == (4,)
    assert np.allclose(out["probabilities"].numpy(), model.predict(images, verbose=0), atol=1e-6)
    assert np.array_equal(out["class_id"].numpy(), out["probabilities"].numpy().argmax(axis=1))


def test_versions_only_grow_and_nothing_half_written_is_visible(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert export.publish(model, tmp_path, card())[0] == 1
    assert export.publish(model, tmp_path, card())[0] == 2
    shutil.rmtree(tmp_path / "clf" / "2")  # e.g. a rolled-back deployment
    assert export.publish(model, tmp_path, card())[0] == 3
    assert export.versions(tmp_path / "clf") == [1, 3]
    assert not [p for p in (tmp_path / "clf").iterdir() if p.name.startswith(".staging")]


def test_failed_export_leaves_no_version(tmp_path: Path) -> None:
    """A model that raises while its signature is traced fails the export after the staging
    directory was made: neither a version nor the half-written directory may remain."""
    import keras

    class Broken(keras.layers.Layer):
        def call(self, inputs: tf.Tensor) -> tf.Tensor:
            raise RuntimeError("boom")

    broken = Broken()
    broken.build((None, 28, 28))
    with pytest.raises(RuntimeError, match="boom"):
        export.publish(broken, tmp_path, card())
    assert export.versions(tmp_path / "clf") == []
    assert [p.name for p in (tmp_path / "clf").iterdir() if not p.name.startswith(".fmtune")] == []


def test_unloading_does_not_pull_the_model_from_under_a_request(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import gc

    from fmtune.serving.models import END, ModelManager

    images = np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    expected = model.predict(images, verbose=0)
    export.publish(model, tmp_path, card(model_name="fmtune"))
    manager = ModelManager(tmp_path / "fmtune", "fmtune", poll_seconds=60)
    manager.poll_once()
    manager.poll_once()
    held = manager.resolve("fmtune", None)  # a request in flight holds version 1
    other = build_from_values("mlp", {**VALUES, "units_0": 24})[0]  # other weights: another answer
    export.publish(other, tmp_path, card(model_name="fmtune"))
    manager.poll_once()
    manager.poll_once()
    assert manager.latest().version == 2  # type: ignore[union-attr]
    assert [s.state for s in manager.statuses("fmtune", 1)] == [END]
    gc.collect()  # whatever the manager let go of is gone now
    out = held.signature("serving_default").fn(image=tf.constant(images))  # the request goes on
    assert np.allclose(out["probabilities"].numpy(), expected, atol=1e-6)
    assert np.array_equal(out["class_id"].numpy(), expected.argmax(axis=1))
    latest = manager.latest().signature("serving_default").fn(image=tf.constant(images))  # type: ignore[union-attr]
    assert not np.allclose(latest["probabilities"].numpy(), expected, atol=1e-6)  # the swap happened
