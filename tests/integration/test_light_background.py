"""A test image on a light background (inverted, 255 - x) is classified as its class, because the
SDK and ``fmtune predict`` invert it back; sent as it is, the trained model gets it wrong."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmtune import data
from fmtune.client import FmtuneClient

from ..conftest import CLASS_NAMES, SYNTHETIC
from .helpers import Served, run, running_server

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def served(pipeline: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    repo = tmp_path_factory.mktemp("light") / "models"
    shutil.copytree(pipeline[0] / "models", repo)
    with running_server(repo) as server:
        yield server


def test_inverted_test_images_are_predicted_as_their_class(served: Served, synthetic_dir: Path) -> None:
    test, _ = data.load_test(SYNTHETIC, synthetic_dir)
    images, labels = test.images[:100], test.labels[:100]
    light = 255 - images
    with FmtuneClient(served.grpc_target, class_names=CLASS_NAMES) as client:
        original = np.array([p.class_id for p in client.predict(images)])
        as_is = np.array([p.class_id for p in client.predict(light, invert=False)])
        detected = np.array([p.class_id for p in client.predict(light)])
        forced = np.array([p.class_id for p in client.predict(images, invert=True)])
    assert (original == labels).mean() >= 0.9
    # Without the inversion the model is mostly wrong: the light background is what it sees.
    assert (as_is == labels).mean() <= 0.5, (as_is == labels).mean()
    assert np.array_equal(detected, original)  # 255 - (255 - x) is x again, exactly
    assert np.array_equal(forced, as_is)


def test_predict_command_says_it_inverted(served: Served, synthetic_dir: Path, tmp_path: Path) -> None:
    test, _ = data.load_test(SYNTHETIC, synthetic_dir)
    with FmtuneClient(served.grpc_target, class_names=CLASS_NAMES) as client:
        right = [p.class_id == label for p, label in zip(client.predict(test.images), test.labels, strict=True)]
        wrong_as_is = [
            p.class_id != label
            for p, label in zip(client.predict(255 - test.images, invert=False), test.labels, strict=True)
        ]
    index = next(i for i in range(len(test)) if right[i] and wrong_as_is[i])
    photo = tmp_path / "on-white.png"
    Image.fromarray(255 - test.images[index]).save(photo)
    base = [sys.executable, "-m", "fmtune", "predict", "--target", served.grpc_target]
    base += ["--dataset", SYNTHETIC, "--data-dir", str(synthetic_dir)]
    done = run([*base, str(photo)], tmp_path)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "on-white.png" in line)
    assert "(inverted)" in row and CLASS_NAMES[test.labels[index]] in row, done.stdout
    assert "inverted 1 of 1 images" in done.stdout
    kept = run([*base, "--no-invert", str(photo)], tmp_path)
    assert kept.returncode == 0, kept.stderr
    row = next(line for line in kept.stdout.splitlines() if "on-white.png" in line)
    assert "(inverted)" not in row and CLASS_NAMES[test.labels[index]] not in row, kept.stdout
