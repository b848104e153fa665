"""Predict outputs written as TF Serving's REST API writes them (json_tensor.cc), strings and
outputs without a batch dimension included."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from fmtune.serving import rest_outputs
from fmtune.serving.errors import Kind, ServingError

CARD = {"class_names": np.array([b"cat", b"\xc3\xa9t\xc3\xa9"], dtype=object), "dark_background": np.array(True)}


def test_the_columnar_format_writes_strings_as_text_and_scalars_as_values() -> None:
    body = json.loads(rest_outputs.body(CARD, row=False))
    assert body == {"outputs": {"class_names": ["cat", "été"], "dark_background": True}}
    assert json.loads(rest_outputs.body({"class_names": CARD["class_names"]}, row=False)) == {"outputs": ["cat", "été"]}


def test_the_row_format_refuses_outputs_without_one_batch_size_as_tf_serving_does() -> None:
    with pytest.raises(ServingError, match="Tensor name: dark_background has no shape information") as scalar:
        rest_outputs.body(CARD, row=True)
    assert scalar.value.kind is Kind.INVALID
    ragged = {"a": np.zeros((1, 3), np.float32), "b": np.array([b"x", b"y"], dtype=object)}
    with pytest.raises(ServingError, match="Tensor name: b has inconsistent batch size: 2 expecting: 1"):
        rest_outputs.body(ragged, row=True)


def test_the_row_format_writes_one_item_per_row() -> None:
    outputs = {"class_id": np.array([2, 0], np.int64), "probabilities": np.array([[0.25, 0.75], [1.0, np.nan]])}
    body = rest_outputs.body(outputs, row=True)
    assert b"NaN" in body  # as TF Serving writes it
    assert json.loads(body.replace(b"NaN", b"0.5")) == {
        "predictions": [
            {"class_id": 2, "probabilities": [0.25, 0.75]},
            {"class_id": 0, "probabilities": [1.0, 0.5]},
        ]
    }
    assert json.loads(rest_outputs.body({"class_id": outputs["class_id"]}, row=True)) == {"predictions": [2, 0]}


def test_string_outputs_named_bytes_are_base64_objects() -> None:
    raw = np.array([[b"\x00\xff"]], dtype=object)
    assert json.loads(rest_outputs.body({"png_bytes": raw}, row=True)) == {
        "predictions": [[{"b64": base64.b64encode(b"\x00\xff").decode()}]]
    }
