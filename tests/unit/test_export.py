import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fmtune import export
from fmtune.config import SearchConfig
from fmtune.export import ModelCard
from fmtune.models.plugins import build_from_values
from fmtune.serving import warmup

VALUES = {"num_layers": 1, "units_0": 16, "dropout_0": 0.1, "learning_rate": 1e-3, "batch_size": 32}


def card(**overrides: object) -> ModelCard:
    fields = {
        "model_name": "clf",
        "dataset": "synthetic",
        "class_names": [str(i) for i in range(10)],
        "input_shape": [28, 28],
        "family": "mlp",
        "hyperparameters": VALUES,
        "config_digest": "abc",
        "experiment": "t",
    }
    return ModelCard(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return build_from_values(SearchConfig(), VALUES, (28, 28), 10)[0]


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
    other = build_from_values(SearchConfig(), {**VALUES, "units_0": 24}, (28, 28), 10)[0]  # other weights
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


def tiny(shape: tuple[int, ...], classes: int):  # type: ignore[no-untyped-def]
    """A model of any image shape and class count, as a user's plugin might be (untrained)."""
    import keras

    image = keras.Input(shape, dtype="uint8")
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(image))
    return keras.Model(image, keras.layers.Dense(classes, activation="softmax")(flat))


def test_both_signatures_take_the_models_shape_and_the_card_says_so(tmp_path: Path) -> None:
    names = ["cat", "dog", "bird"]
    shaped = card(class_names=names, input_shape=[6, 5, 3], dark_background=True, flip_invariant=True, fingerprint="f")
    _, path = export.publish(tiny((6, 5, 3), 3), tmp_path, shaped)
    saved = json.loads((path / export.CARD_FILE).read_text())
    assert saved["input_shape"] == [6, 5, 3] and saved["class_names"] == names and saved["fingerprint"] == "f"
    assert saved["dark_background"] is True and saved["flip_invariant"] is True
    assert saved["signature"]["inputs"]["image"]["shape"] == [None, 6, 5, 3]
    assert saved["signature"]["outputs"]["probabilities"]["shape"] == [None, 3]
    assert export.read_card(path) == shaped.model_copy(update={"version": 1})

    signatures = tf.saved_model.load(str(path)).signatures
    assert set(signatures) == {"serving_default", "fmtune_card"}
    for fn in signatures.values():
        (spec,) = fn.structured_input_signature[1].values()
        assert (spec.name, spec.dtype, spec.shape.as_list()) == ("image", tf.uint8, [None, 6, 5, 3])
    images = np.zeros((2, 6, 5, 3), np.uint8)
    assert signatures["serving_default"](image=tf.constant(images))["probabilities"].shape == (2, 3)
    described = signatures["fmtune_card"](image=tf.constant(images[:1]))
    assert [n.decode() for n in described["class_names"].numpy()] == names
    assert described["class_names"].shape == (3,) and described["dark_background"].numpy().item() is True
    warmed = [r.inputs["image"].tensor_shape for r in warmup.read(path)]
    assert [[d.size for d in shape.dim] for shape in warmed] == [[1, 6, 5, 3], [export.WARMUP_IMAGES, 6, 5, 3]]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input_shape": [28, 28]}, r"takes images of shape \[8, 8\]; its card says \[28, 28\]"),
        ({"input_shape": [8, 8], "class_names": ["a", "b"]}, r"card names 2 classes, so \[None, 2\] was expected"),
    ],
)
def test_a_card_that_disagrees_with_its_model_is_refused_before_any_version(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        export.publish(tiny((8, 8), 10), tmp_path, card(**overrides))
    assert export.versions(tmp_path / "clf") == []
    with pytest.raises(ValueError, match=r"warmup images of shape \[28, 28\]; the model takes \[8, 8\]"):
        export.publish(tiny((8, 8), 10), tmp_path, card(input_shape=[8, 8]), np.zeros((2, 28, 28), np.uint8))


def test_a_card_written_before_cards_had_a_shape_reads_as_what_it_meant() -> None:
    older = card().model_dump(mode="json", exclude={"input_shape", "dark_background", "flip_invariant", "fingerprint"})
    assert older["signature"]["inputs"]["image"]["shape"] == [None, 28, 28]
    read = ModelCard.model_validate_json(json.dumps(older))
    assert (read.input_shape, read.dark_background, read.flip_invariant) == ([28, 28], True, False)
    assert read.fingerprint is None
    with pytest.raises(ValueError, match="input_shape"):  # a new card must say its shape
        ModelCard.model_validate({k: v for k, v in older.items() if k != "signature"})
    with pytest.raises(ValueError, match="C 1 or 3"):
        card(input_shape=[8, 8, 2])


def test_a_model_declaring_one_channel_is_exported_for_its_grayscale_data(tmp_path: Path) -> None:
    """Keras feeds (H, W) images to an (H, W, 1) input, and the model trained on them: clients send the data's shape."""
    _, path = export.publish(tiny((8, 8, 1), 10), tmp_path, card(input_shape=[8, 8]))
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert fn.structured_input_signature[1]["image"].shape.as_list() == [None, 8, 8]
    assert fn(image=tf.zeros([2, 8, 8], tf.uint8))["probabilities"].shape == (2, 10)
