"""The ``fmtune_card`` answer as each transport reads it, from the responses TF Serving writes
(string tensors, a scalar bool) and the ways a server may get them wrong."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from fmtune.client.errors import ServerError
from fmtune.client.grpc_transport import GrpcTransport
from fmtune.client.rest_transport import RestTransport
from fmtune.client.transport import CARD_SIGNATURE, RawCard
from fmtune.wire import serving_pb2 as pb
from fmtune.wire.tensors import to_proto


def rest_answering(outputs: Any, seen: list[dict[str, Any]]) -> RestTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append({"path": request.url.path, **orjson.loads(request.content)})
        return httpx.Response(200, json={"outputs": outputs})

    transport = RestTransport("http://canned:8501", "fmtune")
    transport._http = httpx.Client(base_url=transport.target, transport=httpx.MockTransport(handler))
    return transport


@pytest.mark.parametrize(
    ("outputs", "card"),
    [
        ({"class_names": ["a", "b"], "dark_background": True}, RawCard(["a", "b"], True)),
        ({"class_names": ["a", "b"], "dark_background": [False]}, RawCard(["a", "b"], False)),
        (
            {"class_names": [{"b64": base64.b64encode("é".encode()).decode()}, "b"], "dark_background": False},
            RawCard(["é", "b"], False),
        ),
    ],
)
def test_rest_reads_the_columnar_card(outputs: Any, card: RawCard) -> None:
    seen: list[dict[str, Any]] = []
    assert rest_answering(outputs, seen).card(4, (8, 8, 3), 5.0) == card
    [request] = seen
    assert request["path"] == "/v1/models/fmtune/versions/4:predict"
    assert request["signature_name"] == CARD_SIGNATURE == "fmtune_card"
    assert np.array_equal(request["inputs"]["image"], np.zeros((1, 8, 8, 3)))


@pytest.mark.parametrize(
    "outputs",
    [
        [["a", "b"]],
        {"class_names": ["a", 3], "dark_background": True},
        {"class_names": ["a", "b"], "dark_background": 1},
        {"class_names": ["a", "b"], "dark_background": [True, False]},
        {"class_names": ["a", "b"]},
        {"class_names": [{"b64": "not base64!"}], "dark_background": True},
    ],
)
def test_rest_refuses_a_malformed_card(outputs: Any) -> None:
    with pytest.raises(ServerError, match="unexpected fmtune_card response"):
        rest_answering(outputs, []).card(1, (8, 8), 5.0)


def grpc_answering(outputs: dict[str, Any], seen: list[Any]) -> GrpcTransport:
    transport = GrpcTransport("127.0.0.1:1", "fmtune")
    response = pb.PredictResponse()
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(value)

    def predict(request: Any, timeout: float) -> Any:
        seen.append(request)
        return response

    transport._predict = predict
    return transport


def strings(*names: bytes) -> Any:
    proto = pb.TensorProto(dtype=pb.DT_STRING, string_val=list(names))
    proto.tensor_shape.dim.add(size=len(names))
    return proto


@pytest.mark.parametrize("dark", [np.array(True), np.array([True])])
def test_grpc_reads_the_card(dark: np.ndarray) -> None:
    seen: list[Any] = []
    card = grpc_answering({"class_names": strings(b"cat", "é".encode()), "dark_background": to_proto(dark)}, seen)
    assert card.card(3, (32, 32, 3), 5.0) == RawCard(["cat", "é"], True)
    [request] = seen
    assert request.model_spec.signature_name == "fmtune_card" and request.model_spec.version.value == 3
    assert [d.size for d in request.inputs["image"].tensor_shape.dim] == [1, 32, 32, 3]


@pytest.mark.parametrize(
    "outputs",
    [
        {"class_names": to_proto(np.array([1, 2])), "dark_background": to_proto(np.array(True))},
        {"class_names": strings(b"\xff"), "dark_background": to_proto(np.array(True))},
        {"class_names": strings(b"a")},
        {"class_names": strings(b"a"), "dark_background": to_proto(np.array([True, False]))},
    ],
)
def test_grpc_refuses_a_malformed_card(outputs: dict[str, Any]) -> None:
    with pytest.raises(ServerError, match="unexpected fmtune_card response"):
        grpc_answering(outputs, []).card(1, (8, 8), 5.0)
