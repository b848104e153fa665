"""Export a trained model as a numbered SavedModel version, published atomically.

TF Serving polls the model directory and will load a half-written version, so the SavedModel and
its ``fmtune.json`` card are written to a hidden temp dir and renamed into place in one step.
Versions only grow: the highest number ever published is remembered even if a version is removed.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, computed_field, field_validator, model_validator

from fmtune import __version__, files
from fmtune.results import now
from fmtune.wire.contract import (
    CARD_SIGNATURE,
    CLASS_ID,
    CLASS_NAMES,
    DARK_BACKGROUND,
    INPUT,
    PROBABILITIES,
    SIGNATURE,
    VERSION_NAME,
)

log = logging.getLogger("fmtune")
CARD_FILE = "fmtune.json"
_COUNTER = ".fmtune-last-version"
_LOCK = ".fmtune-lock"
WARMUP_IMAGES = 8


class ModelCard(BaseModel):
    """What a served version is: written beside ``saved_model.pb`` as ``fmtune.json``.

    ``input_shape`` and ``class_names`` must agree with the model (the export checks), and the
    ``fmtune_card`` signature serves ``class_names`` and ``dark_background`` from this card. A card
    written before cards recorded a shape reads as what it meant: its signature block's shape, and
    the MNIST family's dark background (every dataset fmtune took then).
    """

    model_name: str
    version: int = 0
    dataset: str
    class_names: list[str] = Field(min_length=2)
    input_shape: list[int] = Field(min_length=2, max_length=3)  # one image: (H, W) or (H, W, C)
    dark_background: bool = False
    flip_invariant: bool = False
    fingerprint: str | None = None  # the dataset's (``fmtune.data.Dataset.fingerprint``); None in older cards
    family: str
    hyperparameters: dict[str, Any]
    val_metrics: dict[str, float] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)
    config_digest: str
    experiment: str
    created_at: datetime = Field(default_factory=now)
    fmtune_version: str = __version__

    @computed_field  # type: ignore[prop-decorator]
    @property
    def signature(self) -> dict[str, Any]:
        """The contracted ``serving_default`` signature, with this model's shape and class count."""
        return {
            "name": SIGNATURE,
            "inputs": {INPUT: {"dtype": "uint8", "shape": [None, *self.input_shape]}},
            "outputs": {
                PROBABILITIES: {"dtype": "float32", "shape": [None, len(self.class_names)]},
                CLASS_ID: {"dtype": "int64", "shape": [None]},
            },
        }

    @model_validator(mode="before")
    @classmethod
    def _older_cards(cls, data: Any) -> Any:
        """The shape of a card written before ``input_shape`` existed is in its signature block;
        the block itself is always derived, never read."""
        if not isinstance(data, dict):
            return data
        stored = data.get("signature")
        data = {k: v for k, v in data.items() if k != "signature"}
        inputs = stored.get("inputs") if isinstance(stored, dict) else None
        image = inputs.get(INPUT) if isinstance(inputs, dict) else None
        shape = image.get("shape") if isinstance(image, dict) else None
        if "input_shape" not in data and isinstance(shape, list) and shape:
            data = {"dark_background": True, **data, "input_shape": shape[1:]}
        return data

    @field_validator("input_shape")
    @classmethod
    def _image_shape(cls, shape: list[int]) -> list[int]:
        if any(d < 1 for d in shape) or (len(shape) == 3 and shape[2] not in (1, 3)):
            raise ValueError(f"input_shape {shape} is not (H, W) or (H, W, C) with C 1 or 3")
        return shape


def versions(model_dir: Path) -> list[int]:
    """Published versions, ascending (hidden temp dirs are never numeric)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if VERSION_NAME.fullmatch(p.name) and p.is_dir())


@contextmanager
def _locked(model_dir: Path) -> Iterator[None]:
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / _LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _next_version(model_dir: Path) -> int:
    counter = model_dir / _COUNTER
    last = int(counter.read_text().strip() or 0) if counter.is_file() else 0
    return max([last, *versions(model_dir)]) + 1


def default_warmup_images(count: int, input_shape: Sequence[int]) -> np.ndarray:
    """Stand-ins for real images when the exporter has none: warmup needs the shapes, not the pixels."""
    return np.random.default_rng(0).integers(0, 256, (count, *input_shape), dtype=np.uint8)


def declared_input_shape(model: Any) -> tuple[int, ...] | None:
    """One image's shape as the model declares it (a Keras model built on an ``Input``), else None."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # a bare layer, or a subclassed model never called
        return None
    if not inputs or len(inputs) != 1:
        return None
    shape = tuple(inputs[0].shape[1:])
    return tuple(int(d) for d in shape) if all(d is not None for d in shape) else None


def _grayscale(shape: Sequence[int]) -> tuple[int, ...]:
    """``(H, W, 1)`` as ``(H, W)``: the same images."""
    return tuple(shape[:2]) if len(shape) == 3 and shape[2] == 1 else tuple(shape)


def write_saved_model(model: Any, path: Path, card: ModelCard, warmup_images: np.ndarray | None = None) -> None:
    """The two contracted signatures (``fmtune.wire.contract``) for the card's image shape and class
    names, with TF Serving warmup records made from ``warmup_images`` (a few test images).

    The card must agree with the model, the shape it declares and the K it outputs, since clients
    size their inputs and name their classes from what this writes: a disagreement found here is
    one no client meets later. Grayscale is the one latitude: a model declaring ``(H, W, 1)`` for
    ``(H, W)`` data takes those images too (Keras adapts them, and it was trained on them).
    """
    import keras
    import tensorflow as tf

    from fmtune.serving import warmup

    shape = tuple(card.input_shape)
    declared = declared_input_shape(model)
    if declared is not None and _grayscale(declared) != _grayscale(shape):
        raise ValueError(f"the model takes images of shape {list(declared)}; its card says {list(shape)}")
    if warmup_images is None:
        warmup_images = default_warmup_images(WARMUP_IMAGES, shape)
    if tuple(warmup_images.shape[1:]) != shape:
        raise ValueError(f"warmup images of shape {list(warmup_images.shape[1:])}; the model takes {list(shape)}")

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(model(image, training=False), tf.float32)
        return {PROBABILITIES: probabilities, CLASS_ID: tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    def describe(image: tf.Tensor) -> dict[str, tf.Tensor]:
        del image  # the card is the same whatever the image: it is there so any server can call it
        return {
            CLASS_NAMES: tf.constant(card.class_names, tf.string),
            DARK_BACKGROUND: tf.constant(card.dark_background, tf.bool),
        }

    spec = [tf.TensorSpec([None, *shape], tf.uint8, name=INPUT)]
    archive = keras.export.ExportArchive()
    archive.track(model)
    traced = archive.add_endpoint(name=SIGNATURE, fn=serve, input_signature=spec)
    outputs = traced.get_concrete_function().structured_outputs[PROBABILITIES].shape
    if outputs.rank != 2 or outputs[1] != len(card.class_names):
        raise ValueError(
            f"the model outputs probabilities of shape {outputs.as_list()}; its card names "
            f"{len(card.class_names)} classes, so [None, {len(card.class_names)}] was expected"
        )
    archive.add_endpoint(name=CARD_SIGNATURE, fn=describe, input_signature=spec)
    archive.write_out(str(path), verbose=False)
    warmup.write(path, warmup_images[:WARMUP_IMAGES])


def stage(model: Any, model_repo: Path, card: ModelCard, warmup_images: np.ndarray | None = None) -> Path:
    """Write the SavedModel for ``card`` into a hidden directory beside the versions (invisible to servers)."""
    model_dir = model_repo / card.model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".staging-"))
    try:
        write_saved_model(model, staging, card, warmup_images)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def stage_copy(version_dir: Path, model_repo: Path, model_name: str) -> Path:
    """Stage a copy of an already exported version (for redeploying it elsewhere)."""
    model_dir = model_repo / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".staging-"))
    try:
        shutil.copytree(version_dir, staging, dirs_exist_ok=True)
        (staging / CARD_FILE).unlink(missing_ok=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def commit(staging: Path, card: ModelCard) -> tuple[int, Path]:
    """Rename a staged SavedModel, with its card, into the next version number in one step."""
    model_dir = staging.parent
    with _locked(model_dir):
        version = _next_version(model_dir)
        card = card.model_copy(update={"version": version})
        (staging / CARD_FILE).write_text(card.model_dump_json(indent=2))
        target = model_dir / str(version)
        staging.rename(target)
        files.replace(model_dir / _COUNTER, str(version).encode(), sync=True)
    log.info("published %s version %d at %s", card.model_name, version, target)
    return version, target


def unpublish(version_dir: Path) -> Path:
    """Take a version out of service by renaming it to a hidden name (kept for inspection)."""
    hidden = version_dir.with_name(f".rejected-{version_dir.name}-{int(time.time())}")
    version_dir.rename(hidden)
    log.info("unpublished %s (kept as %s)", version_dir, hidden.name)
    return hidden


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def publish(model: Any, model_repo: Path, card: ModelCard, warmup_images: np.ndarray | None = None) -> tuple[int, Path]:
    """Write the SavedModel and card, then rename them into the next version number."""
    staging = stage(model, model_repo, card, warmup_images)
    try:
        return commit(staging, card)
    except BaseException:
        discard(staging)
        raise


def latest_card(model_dir: Path) -> ModelCard | None:
    """The card of the highest published version (the one a latest-version server serves)."""
    for version in reversed(versions(model_dir)):
        try:
            return read_card(model_dir / str(version))
        except (OSError, ValueError):
            continue
    return None


def read_card(version_dir: Path) -> ModelCard:
    return ModelCard.model_validate_json((version_dir / CARD_FILE).read_text())
