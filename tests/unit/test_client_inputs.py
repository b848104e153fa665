from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmtune.client import InvalidInputError
from fmtune.client.images import light_background, orient, to_batch


def test_accepted_inputs_become_one_uint8_batch(tmp_path: Path) -> None:
    single = np.full((28, 28), 7, np.uint8)
    assert to_batch(single).shape == (1, 28, 28)
    assert to_batch(np.zeros((3, 28, 28), np.uint8)).shape == (3, 28, 28)
    floats = np.linspace(0, 1, 784, dtype=np.float32).reshape(28, 28)
    converted = to_batch(floats)
    assert converted.dtype == np.uint8 and converted.min() == 0 and converted.max() == 255
    assert to_batch(np.full((28, 28), 200, np.int64))[0, 0, 0] == 200

    png = tmp_path / "shirt.png"
    Image.new("RGB", (56, 56), (255, 255, 255)).save(png)
    jpg = tmp_path / "shoe.jpg"
    Image.new("L", (28, 28), 10).save(jpg)
    mixed = to_batch([png, str(jpg), Image.new("L", (28, 28), 3), single])
    assert mixed.shape == (4, 28, 28) and mixed.dtype == np.uint8
    assert mixed[0].min() == 255 and mixed[2, 0, 0] == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros((28,), np.uint8), r"shape \(28,\) is not \(28, 28\) or \(N, 28, 28\)"),
        (np.zeros((2, 28, 28, 1), np.uint8), r"shape \(2, 28, 28, 1\)"),
        (np.zeros((32, 32), np.uint8), r"shape \(32, 32\)"),
        (np.zeros((0, 28, 28), np.uint8), "empty batch"),
        ([], "empty batch"),
        (np.zeros((28, 28), bool), "dtype bool is not supported"),
        (np.zeros((28, 28), complex), "dtype complex128 is not supported"),
        (np.full((28, 28), np.nan, np.float32), "NaN"),
        (np.full((28, 28), 1.5, np.float32), r"float images must lie in \[0, 1\]; found values in \[1.5, 1.5\]"),
        (np.full((28, 28), -3, np.int32), r"integer pixels must lie in \[0, 255\]"),
        (np.full((28, 28), 256, np.int32), r"integer pixels must lie in \[0, 255\]"),
        ([0.1, 0.2], "flat list of numbers"),
        ({"image": 1}, "unsupported input of type dict"),
    ],
)
def test_bad_inputs_are_named(value: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        to_batch(value)


def test_bad_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"nope\.png: no such image file"):
        to_batch(tmp_path / "nope.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InvalidInputError, match=r"notes\.png: not an image"):
        to_batch([np.zeros((28, 28), np.uint8), text])


def test_a_light_background_is_detected_from_the_border_and_inverted() -> None:
    dark = np.zeros((28, 28), np.uint8)
    dark[4:24, 8:20] = 220  # a light garment on black, as in Fashion-MNIST
    light = 255 - dark  # the same garment photographed on white
    grey = np.full((28, 28), 127, np.uint8)  # just under the threshold: left alone
    batch = np.stack([dark, light, grey])
    assert light_background(batch).tolist() == [False, True, False]
    oriented, flipped = orient(batch)
    assert flipped.tolist() == [False, True, False]
    assert np.array_equal(oriented[1], dark) and np.array_equal(oriented[0], dark)
    assert np.array_equal(oriented[2], grey)


def test_invert_forces_either_way() -> None:
    light = np.full((2, 28, 28), 250, np.uint8)
    kept, none = orient(light, invert=False)
    assert kept is light and not none.any()
    dark = np.full((2, 28, 28), 5, np.uint8)
    forced, every = orient(dark, invert=True)
    assert every.all() and forced.dtype == np.uint8 and (forced == 250).all()


def test_pil_images_and_files_of_any_size_and_mode_become_the_model_shape(tmp_path: Path) -> None:
    rgb = Image.new("RGB", (50, 40), (200, 10, 10))
    photo = tmp_path / "photo.jpg"
    Image.new("RGBA", (64, 48), (0, 0, 255, 255)).convert("RGB").save(photo)
    batch = to_batch([rgb, photo, Image.new("L", (9, 9), 80)], (32, 32, 3))
    assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.uint8
    assert tuple(batch[0, 16, 16]) == (200, 10, 10) and tuple(batch[2, 0, 0]) == (80, 80, 80)
    assert batch[1, 5, 5, 2] > 200 and batch[1, 5, 5, 0] < 20
    gray = to_batch(rgb, (8, 8))
    assert gray.shape == (1, 8, 8) and abs(int(gray[0, 4, 4]) - 66) <= 1  # ITU-R 601-2 luma
    assert to_batch(Image.new("P", (5, 7)), (8, 8, 1)).shape == (1, 8, 8, 1)
    assert to_batch(rgb, (-1, -1, 3)).shape == (1, 40, 50, 3)  # a size the model leaves open is kept


def test_arrays_of_the_model_shape_single_or_batch() -> None:
    assert to_batch(np.zeros((32, 32, 3), np.uint8), (32, 32, 3)).shape == (1, 32, 32, 3)
    assert to_batch(np.ones((4, 32, 32, 3), np.float32), (32, 32, 3))[0, 0, 0, 0] == 255
    assert to_batch(np.zeros((8, 8), np.uint8), (8, 8, 1)).shape == (1, 8, 8, 1)  # the axis of 1 is added
    assert to_batch(np.zeros((5, 8, 8), np.uint8), (8, 8, 1)).shape == (5, 8, 8, 1)
    assert to_batch([np.zeros((8, 8, 3), np.uint8)] * 2, (8, 8, 3)).shape == (2, 8, 8, 3)


@pytest.mark.parametrize(
    ("value", "shape", "message"),
    [
        (np.zeros((32, 32), np.uint8), (32, 32, 3), r"shape \(32, 32\) is not \(32, 32, 3\) or \(N, 32, 32, 3\): "
         r"it has 1 channel and the model takes 3 \(RGB\)"),
        (np.zeros((2, 32, 32, 3), np.uint8), (32, 32), r"it has 3 channels and the model takes 1 \(grayscale\)"),
        (np.zeros((32, 32, 4), np.uint8), (32, 32, 3), "it has 4 channels and the model takes 3"),
        (np.zeros((28, 28, 3), np.uint8), (32, 32, 3),
         r"shape \(28, 28, 3\) is not \(32, 32, 3\) or \(N, 32, 32, 3\)$"),
        ([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)], (-1, -1, 3), "sizes .* differ"),
        ([0.1, 0.2], (32, 32, 3), r"pass a \(32, 32, 3\) array"),
    ],
)  # fmt: skip
def test_a_wrong_shape_or_channel_count_is_named(value: object, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        to_batch(value, shape)


def test_a_truncated_image_file_is_named(tmp_path: Path) -> None:
    whole = tmp_path / "whole.png"
    Image.effect_noise((64, 64), 50).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(InvalidInputError, match=r"cut\.png: cannot read the image"):
        to_batch(cut, (8, 8))


def test_the_border_of_colour_images_decides_and_only_for_dark_background_models() -> None:
    photo = np.full((2, 6, 6, 3), 240, np.uint8)
    photo[1] = 10
    assert light_background(photo).tolist() == [True, False]
    oriented, flipped = orient(photo, dark_background=True)
    assert flipped.tolist() == [True, False] and oriented[0].max() == 15 and oriented[1].max() == 10
    kept, none = orient(photo, dark_background=False)
    assert kept is photo and not none.any()
