"""The SDK and ``fmtune predict`` on models of other shapes than 28x28x10, over gRPC and REST: the
image shape read from GetModelMetadata, the class names and background from the ``fmtune_card``
signature, and images of any size and mode made to fit.

The SavedModels are built here by hand, as the contract describes them, and served by the built-in
server in this process; their answers are simple functions of the pixels, so a test can tell what
the model saw.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmtune.client import FmtuneClient, InvalidInputError, ModelInfo

from .._builtin_server import Loopback, builtin_server
from .helpers import run

pytestmark = pytest.mark.timeout(300)

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PETS = ["cat", "dog", "fox"]


def save_model(path: Path, shape: tuple[int, ...], names: list[str], dark: bool, card: bool = True) -> None:
    """A SavedModel of the contract. A grayscale model's class is its image's mean brightness in K
    steps (so an inverted image lands at the other end); an RGB model's is its brightest channel."""
    import tensorflow as tf

    classes = len(names)

    class Model(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.names, self.dark = tf.constant(names), tf.constant(dark)
            self.centres = tf.constant(np.linspace(0.0, 1.0, classes), tf.float32)

        @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.uint8, name="image")])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            x = tf.cast(image, tf.float32) / 255.0
            if len(shape) == 3:
                logits = 20.0 * tf.reduce_mean(x, axis=[1, 2])
            else:
                mean = tf.reduce_mean(x, axis=[1, 2])
                logits = -50.0 * tf.abs(mean[:, None] - self.centres[None, :])
            probabilities = tf.nn.softmax(logits)
            return {"probabilities": probabilities, "class_id": tf.argmax(probabilities, -1, output_type=tf.int64)}

        @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.uint8, name="image")])
        def card(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"class_names": self.names, "dark_background": self.dark}

    model = Model()
    signatures = {"serving_default": model.serve} | ({"fmtune_card": model.card} if card else {})
    tf.saved_model.save(model, str(path), signatures=signatures)


@pytest.fixture(scope="module")
def gray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    """An 8x8 grayscale 10-class model of light objects on dark."""
    repo = tmp_path_factory.mktemp("gray")
    save_model(repo / "fmtune" / "1", (8, 8), DIGITS, dark=True)
    with builtin_server(repo) as server:
        server.wait_for(1)
        yield server


@pytest.fixture(scope="module")
def rgb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    """A 32x32 RGB 3-class model of photos (no dark background)."""
    repo = tmp_path_factory.mktemp("rgb")
    save_model(repo / "fmtune" / "1", (32, 32, 3), PETS, dark=False)
    with builtin_server(repo) as server:
        server.wait_for(1)
        yield server


def target(server: Loopback, transport: str) -> str:
    return server.grpc_target if transport == "grpc" else server.rest_target


def on_white(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A dark square on a white background: a product photo, for a model of light on dark."""
    image = Image.new(mode, size, "white")
    image.paste("black", (size[0] // 3, size[1] // 3, 2 * size[0] // 3, 2 * size[1] // 3))
    return image


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_a_grayscale_model_takes_any_image(gray: Loopback, transport: str) -> None:
    with FmtuneClient(target(gray, transport)) as client:
        assert client.model_info() == ModelInfo(1, (8, 8), 10, tuple(DIGITS), True)
        [photo, kept, dark] = [
            *client.predict(on_white((50, 40))),
            *client.predict(on_white((50, 40)), invert=False),
            *client.predict(Image.new("RGB", (50, 40), (10, 10, 10))),
        ]
        assert photo.inverted and photo.class_name in DIGITS and photo.class_id <= 3  # mostly dark, once inverted
        assert not kept.inverted and kept.class_id >= 6
        assert not dark.inverted and dark.class_name == "zero" and dark.model_version == 1
        assert [p.class_name for p in client.predict(np.full((3, 8, 8), 0.5, np.float32))] == ["four"] * 3
        with pytest.raises(InvalidInputError, match=r"shape \(28, 28\) is not \(8, 8\) or \(N, 8, 8\)"):
            client.predict(np.zeros((28, 28), np.uint8))


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_an_rgb_model_takes_any_image(rgb: Loopback, transport: str) -> None:
    with FmtuneClient(target(rgb, transport)) as client:
        assert client.model_info() == ModelInfo(1, (32, 32, 3), 3, tuple(PETS), False)
        [red, blue] = client.predict([Image.new("RGB", (50, 40), (220, 20, 20)), Image.new("RGB", (7, 9), "blue")])
        assert (red.class_name, blue.class_name) == ("cat", "fox")
        [gray] = client.predict(Image.new("L", (50, 40), 90))  # converted to RGB: every channel alike
        assert gray.class_name in PETS and np.allclose(gray.probabilities, 1 / 3, atol=1e-4)
        [photo] = client.predict(on_white((50, 40)))  # a light background is how photos are: left alone
        assert not photo.inverted
        assert client.predict(np.zeros((2, 32, 32, 3), np.uint8), invert=True)[0].inverted  # forced
        with pytest.raises(InvalidInputError, match=r"shape \(32, 32\) is not \(32, 32, 3\) or \(N, 32, 32, 3\)"):
            client.predict(np.zeros((32, 32), np.uint8))
        with pytest.raises(InvalidInputError, match=r"shape \(2, 8, 8\) is not \(32, 32, 3\)"):
            client.predict(np.zeros((2, 8, 8), np.uint8))


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_a_model_without_a_card_then_a_new_version_with_one(tmp_path: Path, transport: str) -> None:
    """A version without ``fmtune_card`` is named by class id and inverted only when asked; when a
    version of another shape replaces it, an unpinned client follows it."""
    save_model(tmp_path / "fmtune" / "1", (8, 8), DIGITS, dark=True, card=False)
    with builtin_server(tmp_path) as server, FmtuneClient(target(server, transport)) as client:
        server.wait_for(1)
        [plain] = client.predict(on_white((50, 40)))
        assert (plain.class_name, plain.inverted) == (str(plain.class_id), False)
        assert client.predict(on_white((50, 40)), invert=True)[0].inverted
        save_model(tmp_path / "fmtune" / "2", (32, 32, 3), PETS, dark=False)
        server.wait_for(1, "END")
        [red] = client.predict(Image.new("RGB", (50, 40), (220, 20, 20)))
        assert (red.model_version, red.class_name) == (2, "cat")


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_predict_command_shows_the_served_names(rgb: Loopback, transport: str, tmp_path: Path) -> None:
    files = [tmp_path / "red.png", tmp_path / "blue.jpg"]
    Image.new("RGB", (64, 48), (230, 30, 30)).save(files[0])
    Image.new("RGB", (20, 20), (0, 0, 250)).save(files[1])
    argv = [sys.executable, "-m", "fmtune", "predict", "--target", target(rgb, transport), *map(str, files)]
    done = run([*argv, "--workdir", str(tmp_path / "runs")], tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {name: line for line in done.stdout.splitlines() for name in ("red.png", "blue.jpg") if name in line}
    assert "cat" in rows["red.png"] and "fox" in rows["blue.jpg"], done.stdout
    assert "inverted" not in done.stdout


def test_predict_command_marks_inverted_rows_for_a_dark_background_model(gray: Loopback, tmp_path: Path) -> None:
    photo = tmp_path / "on-white.png"
    on_white((50, 40)).save(photo)
    argv = [sys.executable, "-m", "fmtune", "predict", "--target", gray.grpc_target, str(photo)]
    done = run([*argv, "--workdir", str(tmp_path / "runs")], tmp_path)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "on-white.png" in line)
    assert "(inverted)" in row and any(name in row for name in DIGITS), done.stdout
    assert "inverted 1 of 1 images" in done.stdout and "light background" in done.stdout


def test_predict_command_says_when_the_model_serves_no_names(tmp_path: Path) -> None:
    save_model(tmp_path / "models" / "fmtune" / "1", (8, 8), DIGITS, dark=True, card=False)
    Image.new("L", (8, 8), 0).save(tmp_path / "black.png")
    with builtin_server(tmp_path / "models") as server:
        server.wait_for(1)
        argv = [sys.executable, "-m", "fmtune", "predict", "--target", server.rest_target, str(tmp_path / "black.png")]
        done = run([*argv, "--workdir", str(tmp_path / "runs")], tmp_path)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "black.png" in line)
    assert " 0 " in row and "zero" not in row, done.stdout
    assert "version 1 serves no class names (no fmtune_card signature)" in " ".join(done.stdout.split())


def colour_squares(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """32x32 RGB images whose label is their brightest channel: what the RGB model predicts."""
    labels = np.arange(count) % 3
    images = np.random.default_rng(seed).integers(0, 60, (count, 32, 32, 3)).astype(np.uint8)
    images[np.arange(count), :, :, labels] += 150
    return images, labels


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_predict_sample_reads_the_latest_experiments_data_whatever_its_kind(
    rgb: Loopback, transport: str, tmp_path: Path
) -> None:
    (x_train, y_train), (x_test, y_test) = colour_squares(30, 0), colour_squares(6, 1)
    npz = tmp_path / "pets.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    experiment = tmp_path / "runs" / "pets"
    experiment.mkdir(parents=True)
    source = f"{{kind: npz, path: {npz}, class_names: [kitten, puppy, cub]}}"
    (experiment / "config.yaml").write_text(f"name: pets\ndataset: fashion_mnist\nseed: 3\ndata: {source}\n")
    argv = [sys.executable, "-m", "fmtune", "predict", "--target", target(rgb, transport), "--sample", "4"]
    done = run([*argv, "--workdir", str(tmp_path / "runs"), "--seed", "0"], tmp_path, extra_env={"FMTUNE_DATA_DIR": ""})
    assert done.returncode == 0, done.stderr
    assert "4/4 correct" in done.stdout and "✗" not in done.stdout, done.stdout
    rows = [line for line in done.stdout.splitlines() if "test[" in line]
    # The served names as predicted, the dataset's as the truth: the same classes by id.
    pairs = list(zip(PETS, ["kitten", "puppy", "cub"], strict=True))
    assert len(rows) == 4 and all(any(a in row and b in row for a, b in pairs) for row in rows), done.stdout
