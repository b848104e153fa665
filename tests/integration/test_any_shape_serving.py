"""Models of any image shape and class count, exported and served by the built-in server: over gRPC
and REST, GetModelMetadata shows the model's shape, ``fmtune_card`` names its classes and says its
background, Predict answers K probabilities, and an image of another shape is refused naming both
shapes. Tiny untrained Keras models, so this runs in seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from fmtune import export
from fmtune.wire.contract import CARD_SIGNATURE, CLASS_NAMES, DARK_BACKGROUND, INPUT, SIGNATURE

from .._builtin_server import Loopback, builtin_server

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Case:
    shape: tuple[int, ...]
    class_names: tuple[str, ...]
    dark_background: bool
    wrong_shape: tuple[int, ...]  # one image of a shape the model does not take

    @property
    def classes(self) -> int:
        return len(self.class_names)


CASES = {
    "gray-8x8-10": Case((8, 8), tuple(f"digit {i}" for i in range(10)), True, (28, 28)),
    "rgb-32x32x3-3": Case((32, 32, 3), ("cat", "dog", "oiseau é"), False, (32, 32)),
}


@dataclass
class Served:
    case: Case
    server: Loopback
    stub: Any  # PredictionServiceStub
    rest: httpx.Client
    version_dir: Path


def tiny_model(case: Case) -> Any:
    import keras

    image = keras.Input(case.shape, dtype="uint8")
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(image))
    model = keras.Model(image, keras.layers.Dense(case.classes, activation="softmax")(flat))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def wait_available(rest: httpx.Client, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reply = rest.get("/v1/models/fmtune")
        if reply.status_code == 200 and reply.json()["model_version_status"][0]["state"] == "AVAILABLE":
            return
        assert time.monotonic() < deadline, reply.text
        time.sleep(0.05)


@pytest.fixture(scope="module", params=sorted(CASES))
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    case = CASES[request.param]
    card = export.ModelCard(
        model_name="fmtune",
        dataset=request.param,
        class_names=list(case.class_names),
        input_shape=list(case.shape),
        dark_background=case.dark_background,
        flip_invariant=False,
        fingerprint="0" * 64,
        family="plugin",
        hyperparameters={},
        config_digest="test",
        experiment="any-shape",
    )
    repo = tmp_path_factory.mktemp(request.param) / "models"
    _, version_dir = export.publish(tiny_model(case), repo, card)
    with (
        builtin_server(repo) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
        httpx.Client(base_url=server.rest_target, timeout=30) as rest,
    ):
        wait_available(rest)
        yield Served(case, server, prediction_service_pb2_grpc.PredictionServiceStub(channel), rest, version_dir)


def images(shape: tuple[int, ...], count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


def grpc_predict(served: Served, batch: np.ndarray, signature: str = "", outputs: tuple[str, ...] = ()) -> Any:
    request = predict_pb2.PredictRequest(output_filter=outputs)
    request.model_spec.name = "fmtune"
    request.model_spec.signature_name = signature
    request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(batch))
    return served.stub.Predict(request, timeout=30)


def shape_of(tensor_info: Any) -> list[int]:
    return [d.size for d in tensor_info.tensor_shape.dim]


def test_metadata_shows_the_models_shape_and_class_count(served: Served) -> None:
    case = served.case
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "fmtune"
    response = served.stub.GetModelMetadata(request, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    default, card = signatures.signature_def[SIGNATURE], signatures.signature_def[CARD_SIGNATURE]
    for signature in (default, card):
        assert signature.inputs[INPUT].dtype == types_pb2.DT_UINT8
        assert shape_of(signature.inputs[INPUT]) == [-1, *case.shape]
    assert shape_of(default.outputs["probabilities"]) == [-1, case.classes]
    names, flag = card.outputs[CLASS_NAMES], card.outputs[DARK_BACKGROUND]
    assert (names.dtype, shape_of(names), flag.dtype, shape_of(flag)) == (
        types_pb2.DT_STRING,
        [case.classes],
        types_pb2.DT_BOOL,
        [],
    )

    rest = served.rest.get("/v1/models/fmtune/metadata").json()["metadata"]["signature_def"]["signature_def"]
    dims = rest[SIGNATURE]["inputs"][INPUT]["tensor_shape"]["dim"]
    assert [int(d["size"]) for d in dims] == [-1, *case.shape]
    outputs = rest[SIGNATURE]["outputs"]["probabilities"]["tensor_shape"]["dim"]
    assert [int(d["size"]) for d in outputs] == [-1, case.classes]
    assert CARD_SIGNATURE in rest


def test_the_card_signature_names_the_classes_and_the_background(served: Served) -> None:
    case = served.case
    zero = np.zeros((1, *case.shape), np.uint8)
    response = grpc_predict(served, zero, CARD_SIGNATURE)
    assert response.model_spec.signature_name == CARD_SIGNATURE
    names = tf.make_ndarray(response.outputs[CLASS_NAMES])
    assert [n.decode() for n in names] == list(case.class_names)
    assert tf.make_ndarray(response.outputs[DARK_BACKGROUND]).item() is case.dark_background

    body = {"signature_name": CARD_SIGNATURE, "inputs": zero.tolist()}
    reply = served.rest.post("/v1/models/fmtune:predict", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"outputs": {CLASS_NAMES: list(case.class_names), DARK_BACKGROUND: case.dark_background}}
    # The row format needs a batch dimension on every output, as TF Serving's does.
    rows = served.rest.post(
        "/v1/models/fmtune:predict", json={"signature_name": CARD_SIGNATURE, "instances": zero.tolist()}
    )
    assert rows.status_code == 400 and "has no shape information" in rows.json()["error"]


def test_card_requests_arriving_together_are_never_split_between_them(served: Served) -> None:
    """One-image requests for the class names alone, many at once: batched together, K of them
    would each get one of the K names."""
    zero = np.zeros((1, *served.case.shape), np.uint8)
    count = served.case.classes
    with ThreadPoolExecutor(2 * count) as pool:
        answers = list(pool.map(lambda _: grpc_predict(served, zero, CARD_SIGNATURE, (CLASS_NAMES,)), range(8 * count)))
    for response in answers:
        assert [n.decode() for n in tf.make_ndarray(response.outputs[CLASS_NAMES])] == list(served.case.class_names)


def test_predict_answers_k_probabilities_per_image(served: Served) -> None:
    case = served.case
    batch = images(case.shape, 5)
    expected = tf.saved_model.load(str(served.version_dir)).signatures[SIGNATURE](image=tf.constant(batch))
    response = grpc_predict(served, batch)
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    assert probabilities.shape == (5, case.classes)
    assert np.allclose(probabilities, expected["probabilities"].numpy(), atol=1e-6)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(tf.make_ndarray(response.outputs["class_id"]), expected["class_id"].numpy())

    reply = served.rest.post("/v1/models/fmtune:predict", json={"instances": batch.tolist()})
    assert reply.status_code == 200, reply.text
    rows = reply.json()["predictions"]
    assert len(rows) == 5 and all(len(row["probabilities"]) == case.classes for row in rows)
    assert np.allclose([row["probabilities"] for row in rows], probabilities, atol=1e-6)


def test_an_image_of_another_shape_is_refused_naming_the_shapes(served: Served) -> None:
    case = served.case
    wrong = images(case.wrong_shape, 1)
    expected = str([None, *case.shape])
    for signature in ("", CARD_SIGNATURE):
        with pytest.raises(grpc.RpcError) as refused:
            grpc_predict(served, wrong, signature)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str([1, *case.wrong_shape]) in refused.value.details() and expected in refused.value.details()

        body = {"signature_name": signature, "inputs": wrong.tolist()}
        reply = served.rest.post("/v1/models/fmtune:predict", json=body)
        assert reply.status_code == 400
        assert expected in reply.json()["error"], reply.json()
