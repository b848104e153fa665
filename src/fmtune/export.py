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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from fmtune import __version__
from fmtune.results import now
from fmtune.wire.contract import INPUT, SIGNATURE, VERSION_NAME

log = logging.getLogger("fmtune")
CARD_FILE = "fmtune.json"
_COUNTER = ".fmtune-last-version"
_LOCK = ".fmtune-lock"
WARMUP_IMAGES = 8


class ModelCard(BaseModel):
    """What a served version is: written beside ``saved_model.pb`` as ``fmtune.json``."""

    model_name: str
    version: int = 0
    dataset: str
    class_names: list[str]
    family: str
    hyperparameters: dict[str, Any]
    val_metrics: dict[str, float] = Field(default_factory=dict)
    test_metrics: dict[str, float] = Field(default_factory=dict)
    config_digest: str
    experiment: str
    created_at: datetime = Field(default_factory=now)
    fmtune_version: str = __version__
    signature: dict[str, Any] = Field(
        default_factory=lambda: {
            "name": SIGNATURE,
            "inputs": {INPUT: {"dtype": "uint8", "shape": [None, 28, 28]}},
            "outputs": {
                "probabilities": {"dtype": "float32", "shape": [None, 10]},
                "class_id": {"dtype": "int64", "shape": [None]},
            },
        }
    )


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


def default_warmup_images(count: int = WARMUP_IMAGES) -> np.ndarray:
    """Stand-ins for real images when the exporter has none: warmup needs the shapes, not the pixels."""
    return np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)


def write_saved_model(model: Any, path: Path, warmup_images: np.ndarray | None = None) -> None:
    """The contracted signature (uint8 ``image`` in; ``probabilities`` and ``class_id`` out), with
    TF Serving warmup records made from ``warmup_images`` (a few test images)."""
    import keras
    import tensorflow as tf

    from fmtune.serving import warmup

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(model(image, training=False), tf.float32)
        return {"probabilities": probabilities, "class_id": tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE, fn=serve, input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name=INPUT)]
    )
    archive.write_out(str(path), verbose=False)
    images = default_warmup_images() if warmup_images is None else warmup_images[:WARMUP_IMAGES]
    warmup.write(path, images)


def stage(model: Any, model_repo: Path, model_name: str, warmup_images: np.ndarray | None = None) -> Path:
    """Write the SavedModel into a hidden directory beside the versions (invisible to servers)."""
    model_dir = model_repo / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".staging-"))
    try:
        write_saved_model(model, staging, warmup_images)
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
        (model_dir / _COUNTER).write_text(str(version))
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
    staging = stage(model, model_repo, card.model_name, warmup_images)
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
