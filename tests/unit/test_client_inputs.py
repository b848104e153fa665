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
