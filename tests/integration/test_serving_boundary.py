"""Malformed requests against a running built-in server, one class each, over gRPC and REST: every
one is refused with a typed client error naming the problem, and none makes the server allocate
what the request merely declares."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmtune.serving.limits import MAX_REQUEST_ROWS
from fmtune.wire.contract import MAX_MESSAGE_BYTES

from .helpers import Served

pytestmark = pytest.mark.timeout(300)
OK_IMAGE = np.arange(784, dtype=np.uint8).reshape(1, 28, 28)
# What an error message must never show: exception types, tracebacks, file paths.
LEAKS = ("Traceback", "Error:", 'File "', "site-packages", "/tmp/", ".py")


@pytest.fixture(scope="module")
def channel(tiny_served: Served) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", 2 * MAX_MESSAGE_BYTES)]
    with grpc.insecure_channel(tiny_served.grpc_target, options=options) as chan:
        yield chan


def tensor(shape: list[int], dtype: int = types_pb2.DT_UINT8, **fields: object) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)  # type: ignore[arg-type]
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def request(proto: tensor_pb2.TensorProto | None = None, name: str = "image") -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "fmtune"
    if proto is not None:
        req.inputs[name].CopyFrom(proto)
    return req


def refusal(channel: grpc.Channel, req: predict_pb2.PredictRequest) -> tuple[grpc.StatusCode, str]:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(req, timeout=20)
    details = info.value.details() or ""
    assert not any(leak in details for leak in LEAKS), details
    return info.value.code(), details


INVALID, TOO_BIG = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
GRPC_CASES = {
    "content shorter than the shape": (tensor([1, 28, 28], tensor_content=b"\0" * 10), INVALID, "tensor_content"),
    "content longer than the shape": (tensor([1, 28, 28], tensor_content=b"\0" * 785), INVALID, "needs 784"),
    "too few typed values": (tensor([1, 28, 28], int_val=[1, 2, 3]), INVALID, "holds 3 values"),
    "values in the wrong field": (tensor([1, 28, 28], float_val=[0.5] * 784), INVALID, "holds 0 values"),
    "values out of range": (tensor([1, 28, 28], int_val=[300] * 784), INVALID, "out of range"),
    "a negative dimension": (tensor([-1, 28, 28], tensor_content=OK_IMAGE.tobytes()), INVALID, "non-negative"),
    "an unknown rank": (
        tensor_pb2.TensorProto(
            dtype=types_pb2.DT_UINT8, tensor_content=OK_IMAGE.tobytes(), tensor_shape={"unknown_rank": True}
        ),
        INVALID,
        "unknown rank",
    ),
    "the wrong rank": (tensor([784], tensor_content=OK_IMAGE.tobytes()), INVALID, "rank 1"),
    "the wrong dimensions": (tensor([1, 784, 1], tensor_content=OK_IMAGE.tobytes()), INVALID, "incompatible"),
    "an empty batch": (tensor([0, 28, 28]), INVALID, "empty batch"),
    "the wrong dtype": (tensor([1, 28, 28], types_pb2.DT_FLOAT, float_val=[0.0] * 784), INVALID, "to be uint8"),
    "a string tensor": (tensor([1], types_pb2.DT_STRING, string_val=[b"x"]), INVALID, "DT_STRING"),
    "an unknown dtype code": (tensor([1, 28, 28], 999, tensor_content=OK_IMAGE.tobytes()), INVALID, "DT_999"),
    "absurd dimensions": (tensor([2**62, 2**62, 28], int_val=[0]), INVALID, "incompatible"),
    "an absurd batch": (tensor([2**63 - 1, 28, 28], int_val=[0]), TOO_BIG, "byte limit"),
}


@pytest.mark.parametrize("case", sorted(GRPC_CASES))
def test_a_malformed_tensor_is_refused_with_a_typed_code(channel: grpc.Channel, case: str) -> None:
    proto, code, words = GRPC_CASES[case]
    got, details = refusal(channel, request(proto))
    assert got == code and words in details, (case, got, details)


def test_input_and_signature_names_and_undecodable_bytes(channel: grpc.Channel) -> None:
    image = tensor([1, 28, 28], tensor_content=OK_IMAGE.tobytes())
    assert refusal(channel, request(image, name="pixels")) == (
        INVALID,
        "input size does not match signature: 1!=1 len(['pixels']) != len(['image']). Sent extra: ['pixels']. "
        "Missing but required: ['image'].",
    )
    assert refusal(channel, request())[0] == INVALID
    signed = request(image)
    signed.model_spec.signature_name = "nope"
    assert refusal(channel, signed)[0] == grpc.StatusCode.FAILED_PRECONDITION
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\xff\xff\xff\xff", timeout=20)
    assert info.value.code() == INVALID and "not a valid protobuf" in (info.value.details() or "")


def test_a_tiny_request_declaring_a_huge_tensor_allocates_nothing(tiny_served: Served, channel: grpc.Channel) -> None:
    """One value and a shape of 268 MB, in a message of a few bytes, is refused before np.full."""
    req = request(tensor([342_000, 28, 28], int_val=[7]))
    assert req.ByteSize() < 50
    tiny_served.reset_peak_memory()
    before = tiny_served.memory_kib()
    for _ in range(3):
        code, details = refusal(channel, req)
        assert code == TOO_BIG and "342000" in details
    after = tiny_served.memory_kib()
    assert after["VmHWM"] - before["VmHWM"] < 64 * 1024, (before, after)


def test_a_few_bytes_cannot_become_a_64_mib_batch(tiny_served: Served, channel: grpc.Channel) -> None:
    """One value filling [85598, 28, 28]: just under the byte limit, and a model run on 85598 images
    (268 MB of floats for the MLP's Rescaling alone). Refused before it is filled."""
    rows = MAX_MESSAGE_BYTES // 784  # 85598: as many images as fit under the byte limit
    req = request(tensor([rows, 28, 28], int_val=[7]))
    assert req.ByteSize() < 50
    tiny_served.reset_peak_memory()
    before = tiny_served.memory_kib()
    for _ in range(3):
        code, details = refusal(channel, req)
        assert code == TOO_BIG and "filled from one value" in details, (code, details)
    after = tiny_served.memory_kib()
    assert after["VmHWM"] - before["VmHWM"] < 32 * 1024, (before, after)


def test_a_request_over_the_row_limit_is_refused_as_tf_serving_words_it(channel: grpc.Channel) -> None:
    rows = MAX_REQUEST_ROWS + 1
    req = request(tensor([rows, 28, 28], tensor_content=b"\0" * (rows * 784)))
    assert refusal(channel, req) == (
        INVALID,
        f"Task size {rows} is larger than maximum input batch size {MAX_REQUEST_ROWS}",
    )


def test_a_large_request_is_answered_whole_from_bounded_model_calls(tiny_served: Served, channel: grpc.Channel) -> None:
    """The server runs it in slices of at most 256 rows; the answer is the model's on the whole batch."""
    import tensorflow as tf

    images = np.random.default_rng(0).integers(0, 256, (3000, 28, 28), dtype=np.uint8)
    model = tf.saved_model.load(str(tiny_served.repo / "fmtune" / "1")).signatures["serving_default"]
    expected = model(image=tf.constant(images))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(request(tensor([3000, 28, 28], tensor_content=images.tobytes())), timeout=60)
    assert np.array_equal(tf.make_ndarray(response.outputs["class_id"]), expected["class_id"].numpy())
    assert np.allclose(tf.make_ndarray(response.outputs["probabilities"]), expected["probabilities"].numpy(), atol=1e-6)
    reply = httpx.post(
        f"{tiny_served.rest_target}/v1/models/fmtune:predict", json={"inputs": images[:300].tolist()}, timeout=60
    )
    assert reply.json()["outputs"]["class_id"] == expected["class_id"].numpy()[:300].tolist()


def test_a_gzip_message_inflating_past_the_limit_is_resource_exhausted(channel: grpc.Channel) -> None:
    """grpcio checks the receive limit after decompressing (a guard: it is not this server's code)."""
    rows = MAX_MESSAGE_BYTES // 784 + 1
    zeros = request(tensor([rows, 28, 28], tensor_content=b"\0" * (rows * 784)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(zeros, timeout=60, compression=grpc.Compression.Gzip)
    assert info.value.code() == TOO_BIG and "larger than max" in (info.value.details() or "")


def test_a_message_over_the_limit_is_resource_exhausted(channel: grpc.Channel) -> None:
    huge = request(tensor([MAX_MESSAGE_BYTES // 784 + 1, 28, 28], tensor_content=b"\0" * (MAX_MESSAGE_BYTES + 784)))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(huge, timeout=60)
    assert info.value.code() == TOO_BIG


ONE = OK_IMAGE[0].tolist()
REST_CASES = {
    "nested deeper than the recursion limit": (b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "JSON"),
    "nested deeper than orjson reads": (b'{"instances": ' + b"[" * 2000 + b"]" * 2000 + b"}", 400, ""),
    "nested deeper than the rank": ({"instances": [[ONE]]}, 400, "nested 4 deep"),
    "booleans for pixels": ({"instances": [[[True] * 28] * 28]}, 400, "booleans"),
    "a boolean among numbers": ({"instances": [[[1] * 27 + [False]] + [[1] * 28] * 27]}, 400, "booleans"),
    "strings for pixels": ({"instances": [[["1"] * 28] * 28]}, 400, "numbers"),
    "nulls for pixels": ({"inputs": {"image": [[[None] * 28] * 28]}}, 400, "numbers"),
    "objects for pixels": ({"inputs": [[[{}] * 28] * 28]}, 400, "numbers"),
    "numbers too large for any integer": (
        b'{"instances": [[' + b",".join([b"[" + b",".join([b"1" * 30] * 28) + b"]"] * 28) + b"]]}",
        400,
        "out of range",
    ),
    "a non-string signature name": ({"instances": [ONE], "signature_name": ["x"]}, 400, "must be a string"),
    "negative pixels": ({"instances": [[[-1] * 28] * 28]}, 400, "out of range"),
    "fractional pixels": ({"inputs": {"image": [[[0.5] * 28] * 28]}}, 400, "non-integer"),
    "infinite pixels": (
        json.dumps({"instances": [[[float("inf")] + [0] * 27] + [[0] * 28] * 27]}).encode(),
        400,
        "non-integer",
    ),
    "an empty object": ({}, 400, "Missing 'inputs'"),
    "a top-level list": ([ONE], 400, "JSON object"),
    "bad UTF-8": (b'{"instances": "\xff"}', 400, "JSON Parse error"),
}


@pytest.mark.parametrize("case", sorted(REST_CASES))
def test_a_malformed_json_body_is_refused_with_400(tiny_served: Served, case: str) -> None:
    body, status, words = REST_CASES[case]
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).read()
    reply = httpx.post(f"{tiny_served.rest_target}/v1/models/fmtune:predict", content=content, timeout=20)
    assert reply.status_code == status, (case, reply.text[:300])
    error = reply.json()["error"]
    assert words in error and not any(leak in error for leak in LEAKS), (case, error)


@pytest.mark.parametrize("path", ["/v1/models/fmtune/versions/²", "/v1/models/fmtune/versions/%C2%B2:predict"])
def test_a_non_ascii_version_number_is_a_malformed_request(tiny_served: Served, path: str) -> None:
    reply = httpx.request("POST" if "predict" in path else "GET", tiny_served.rest_target + path, json={}, timeout=20)
    assert reply.status_code == 400 and "Malformed request" in reply.json()["error"]


def test_a_body_over_the_limit_is_413_without_being_read(tiny_served: Served) -> None:
    with socket.create_connection(("127.0.0.1", tiny_served.rest_port), timeout=10) as sock:
        head = f"POST /v1/models/fmtune:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_MESSAGE_BYTES + 1}\r\n"
        sock.sendall(head.encode() + b"\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in reply


def test_a_gzip_body_is_answered_and_a_gzip_bomb_refused(tiny_served: Served) -> None:
    url = f"{tiny_served.rest_target}/v1/models/fmtune:predict"
    packed = gzip.compress(json.dumps({"instances": [ONE]}).encode())
    reply = httpx.post(url, content=packed, headers={"Content-Encoding": "gzip"}, timeout=20)
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 1
    bomb = gzip.compress(b" " * (MAX_MESSAGE_BYTES + 1), 9)
    assert len(bomb) < 100_000
    reply = httpx.post(url, content=bomb, headers={"Content-Encoding": "gzip"}, timeout=20)
    assert reply.status_code == 413 and "decompresses to over the" in reply.json()["error"]


def test_the_server_still_answers(tiny_served: Served) -> None:
    reply = httpx.post(f"{tiny_served.rest_target}/v1/models/fmtune:predict", json={"instances": [ONE]}, timeout=20)
    assert reply.status_code == 200 and len(reply.json()["predictions"]) == 1 and tiny_served.alive()
