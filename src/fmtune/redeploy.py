"""``fmtune deploy``: deploy a version exported before (its SavedModel and card) through the same
wiring as the coordinator (``fmtune.deploy.deploy_version``), smoke-tested the same way: with the
first test images of the model's dataset, and the exported model's own answers for them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fmtune import export
from fmtune.deploy import SMOKE_IMAGES, DeployConfig, DeployError, DeploymentRecord, deploy_version
from fmtune.wire.contract import INPUT, PROBABILITIES, SIGNATURE

log = logging.getLogger("fmtune")


def smoke_images(dataset: str, input_shape: Sequence[int], data_dir: Path | None = None) -> np.ndarray:
    """The first SMOKE_IMAGES test images of ``dataset`` (as the coordinator checks with), found in
    ``data_dir`` or the usual places; random pixels of the model's ``input_shape`` if its test split
    is not on this machine (a deploy downloads nothing) or is not of that shape (another dataset of
    the same name), which check the same thing with less realistic inputs."""
    from fmtune import data

    shape = tuple(input_shape)
    try:
        images = data.load_test(dataset, data_dir)[0].images[:SMOKE_IMAGES]
    except data.DatasetError as exc:
        log.info("smoke test with random images: no test images of %s here (%s)", dataset, exc)
        return export.default_warmup_images(SMOKE_IMAGES, shape)
    if images.shape[1:] != shape:
        log.info(
            "smoke test with random images: the test images of %s here are %s, the model takes %s",
            dataset,
            list(images.shape[1:]),
            list(shape),
        )
        return export.default_warmup_images(SMOKE_IMAGES, shape)
    log.info("smoke test with %d test images of %s", len(images), dataset)
    return images


def deploy_exported(
    version_dir: Path, cfg: DeployConfig, model_repo: Path, data_dir: Path | None = None, force: bool = False
) -> DeploymentRecord:
    """Deploy the version exported at ``version_dir`` as the next version of ``model_repo``; every
    failure is a DeployError that says what failed."""
    import tensorflow as tf

    try:
        card = export.read_card(version_dir)
        model = tf.saved_model.load(str(version_dir)).signatures[SIGNATURE]
    except (OSError, ValueError) as exc:
        raise DeployError(f"{version_dir}: {exc}") from None
    except KeyError:
        raise DeployError(f"{version_dir}: the SavedModel has no '{SIGNATURE}' signature") from None
    images = smoke_images(card.dataset, card.input_shape, data_dir)
    expected = model(**{INPUT: tf.constant(images)})[PROBABILITIES].numpy()
    try:
        return deploy_version(
            cfg, lambda: export.stage_copy(version_dir, model_repo, card.model_name), card, images, expected, force
        )
    except OSError as exc:  # the repository cannot be written; the deployer cleans up what it staged
        raise DeployError(f"model repository {model_repo}: {exc.strerror or exc}") from None
