"""Property-based tests of the built-in server: random TensorProtos over gRPC and random JSON
documents over REST, against a running server.

Every answer must be a correct prediction (the same as the SavedModel's in this process) or a
typed client error, within a time limit; the server keeps answering and its peak memory stays
bounded. ``derandomize`` makes every run draw the same examples, so CI is repeatable.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmtune.serving.limits import MAX_FILL_BYTES, MAX_REQUEST_ROWS, MAX_ROWS
from fmtune.wire.contract import MAX_MESSAGE_BYTES

from .helpers import Served

pytestmark = pytest.mark.timeout(300)
EXAMPLES = 500
ANSWER_SECONDS = 10.0
PEAK_GROWTH_KIB = 128 * 1024
PROPERTY = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
HTTP_CLIENT_ERRORS = {400, 404, 413}


class Oracle:
    """The served SavedModel, called in this process: what a correct answer is."""

    def __init__(self, served: Served):
        self.fn = tf.saved_model.load(str(served.repo / "fmtune" / "1")).signatures["serving_default"]

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.fn(image=tf.constant(images)).items()}


@pytest.fixture(scope="module")
def oracle(tiny_served: Served) -> Oracle:
    return Oracle(tiny_served)


@pytest.fixture(scope="module")
def stub(tiny_served: Served) -> Iterator[Any]:
    with grpc.insecure_channel(tiny_served.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel), channel


@pytest.fixture(scope="module")
def http(tiny_served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tiny_served.rest_target, timeout=ANSWER_SECONDS) as client:
        yield client


@pytest.fixture(scope="module")
def peak(tiny_served: Served) -> Iterator[None]:
    """After the module, the server answers and its peak memory grew by less than the bound."""
    tiny_served.reset_peak_memory()
    before = tiny_served.memory_kib()
    yield
    after = tiny_served.memory_kib()
    assert tiny_served.alive()
    assert after["VmHWM"] - before["VmHWM"] < PEAK_GROWTH_KIB, (before, after)


# ---- TensorProtos ---------------------------------------------------------------------------

BAD_DTYPES = [
    types_pb2.DT_INVALID,
    types_pb2.DT_FLOAT,
    types_pb2.DT_INT32,
    types_pb2.DT_INT64,
    types_pb2.DT_STRING,
    types_pb2.DT_BOOL,
    types_pb2.DT_HALF,
    types_pb2.DT_QINT8,
    999,
]
DIMS = st.one_of(st.sampled_from([0, 1, 2, 3, 27, 29, 784, -1, 100_000, 2**40]), st.integers(-(2**63), 2**63 - 1))
# Each example is a valid request with some of these applied (none, one or two), so that valid
# requests, near misses and nonsense are all drawn often.
TENSOR_MUTATIONS = ["dtype", "shape", "batch", "unknown_rank", "length", "field", "bytes", "range", "empty", "amplify"]
# Batches a request could make the server amplify: over one model call, up to and just over what one
# value may fill, over the row limit, and as many images as fit under the byte limit.
FILLABLE = MAX_FILL_BYTES // 784
AMPLIFIED = [MAX_ROWS + 1, FILLABLE, FILLABLE + 1, MAX_REQUEST_ROWS + 1, 85_598, 342_000]
REQUEST_MUTATIONS = ["name", "signature", "version", "inputs", "output_filter"]


@st.composite
def tensor_protos(draw: st.DrawFn) -> tensor_pb2.TensorProto:
    mutations = set(draw(st.lists(st.sampled_from(TENSOR_MUTATIONS), max_size=2)))
    shape = [draw(st.integers(1, 4)), 28, 28]
    if "batch" in mutations:
        shape[0] = draw(DIMS)
    if "amplify" in mutations:
        shape[0] = draw(st.sampled_from(AMPLIFIED))
    if "shape" in mutations:
        shape = draw(st.lists(DIMS, max_size=5))
    proto = tensor_pb2.TensorProto(
        dtype=draw(st.sampled_from(BAD_DTYPES)) if "dtype" in mutations else types_pb2.DT_UINT8
    )
    proto.tensor_shape.unknown_rank = "unknown_rank" in mutations
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    count = math.prod(shape) if all(0 <= size <= 10_000 for size in shape) else draw(st.integers(0, 64))
    cap = 2_000_000 if "amplify" in mutations else 40_000  # whole batches up to FILLABLE + 1 images
    count = min(count, cap) + (draw(st.sampled_from([-1, 1, 784])) if "length" in mutations else 0)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pixels = rng.integers(0, 256, max(count, 0))
    if "range" in mutations and count > 0:
        pixels[draw(st.integers(0, count - 1))] = draw(st.sampled_from([-1, 256, 2**31 - 1, -(2**31)]))
    encoding = draw(st.sampled_from(["content", "int_val", "one_value"]))
    if "amplify" in mutations and draw(st.booleans()):
        encoding = "one_value"  # a few bytes for the whole batch
    if "empty" in mutations:
        pass
    elif "bytes" in mutations:
        proto.tensor_content = draw(st.binary(max_size=64))
    elif "field" in mutations:
        proto.float_val.extend(pixels.astype(float).tolist())
    elif encoding == "content" and "range" not in mutations:
        proto.tensor_content = pixels.astype(np.uint8).tobytes()
    elif encoding == "one_value":
        proto.int_val.append(int(pixels[0]) if count > 0 else 0)
    else:
        proto.int_val.extend(pixels.tolist())
    return proto


@st.composite
def predict_requests(draw: st.DrawFn) -> predict_pb2.PredictRequest:
    mutations = set(draw(st.lists(st.sampled_from(REQUEST_MUTATIONS), max_size=2)))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.sampled_from(["", "other", "fmtune2"])) if "name" in mutations else "fmtune"
    signatures = ["nope", "serving_default "] if "signature" in mutations else ["", "serving_default"]
    request.model_spec.signature_name = draw(st.sampled_from(signatures))
    versions = [2, 0, -1, 2**63 - 1] if "version" in mutations else [None, 1]
    version = draw(st.sampled_from(versions))
    if version is not None:
        request.model_spec.version.value = version
    names = draw(st.sampled_from([[], ["pixels"], ["image", "extra"]])) if "inputs" in mutations else ["image"]
    for name in names:
        request.inputs[name].CopyFrom(draw(tensor_protos()))
    filters = (
        [["nope"], ["class_id", "nope"]] if "output_filter" in mutations else [[], ["class_id"], ["probabilities"]]
    )
    request.output_filter.extend(draw(st.sampled_from(filters)))
    return request


def assert_correct_prediction(request: Any, response: Any, oracle: Oracle) -> None:
    """The server accepted ``request``: it must be a valid one, and the answer the model's."""
    images = tf.make_ndarray(request.inputs["image"])
    assert images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28) and len(images)
    assert len(images) <= MAX_REQUEST_ROWS, "accepted a batch over the row limit"
    tensor = request.inputs["image"]
    if not tensor.tensor_content and len(tensor.int_val) == 1 and images.size > 1:
        assert images.nbytes <= MAX_FILL_BYTES, "filled a batch over the fill limit from one value"
    expected = oracle(images)
    wanted = set(request.output_filter) or {"probabilities", "class_id"}
    assert set(response.outputs) == wanted
    for name in wanted:
        got = tf.make_ndarray(response.outputs[name])
        assert got.shape == expected[name].shape and np.allclose(got, expected[name], atol=1e-6), name
    assert response.model_spec.version.value == 1


@PROPERTY
@given(request=predict_requests())
def test_random_tensor_protos_get_a_prediction_or_a_typed_error(
    request: Any, stub: Any, oracle: Oracle, tiny_served: Served, peak: None
) -> None:
    started = time.monotonic()
    try:
        response = stub[0].Predict(request, timeout=ANSWER_SECONDS)
    except grpc.RpcError as exc:
        event(exc.code().name)
        assert exc.code() in CLIENT_ERRORS, (exc.code(), exc.details())
        assert exc.details(), exc.code()
    else:
        event("OK")
        assert_correct_prediction(request, response, oracle)
    assert time.monotonic() - started < ANSWER_SECONDS
    assert tiny_served.alive()


def image_request(rows: int, encoding: str, value: int) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fmtune"
    proto = request.inputs["image"]
    proto.dtype = types_pb2.DT_UINT8
    for size in (rows, 28, 28):
        proto.tensor_shape.dim.add(size=size)
    if encoding == "one_value":
        proto.int_val.append(value)
    else:
        proto.tensor_content = np.full(rows * 784, value, np.uint8).tobytes()
    return request


@settings(PROPERTY, max_examples=60)
@given(
    rows=st.sampled_from(AMPLIFIED) | st.integers(1, 2 * FILLABLE),
    encoding=st.sampled_from(["one_value", "content"]),
    value=st.integers(0, 255),
)
def test_batches_a_server_could_amplify_are_answered_in_full_or_refused_by_their_bound(
    rows: int, encoding: str, value: int, stub: Any, oracle: Oracle, peak: None
) -> None:
    """A few bytes that would fill a large batch, and batches over one model call or the row limit:
    each is refused by the bound it breaks, as TF Serving words it where it has one, or answered whole."""
    if encoding == "content" and rows > MAX_REQUEST_ROWS + 1:
        encoding = "one_value"  # real pixels only up to just over the row limit, so examples stay quick
    request = image_request(rows, encoding, value)
    expected: tuple[grpc.StatusCode, str] | None
    if rows * 784 > MAX_MESSAGE_BYTES:
        expected = (grpc.StatusCode.RESOURCE_EXHAUSTED, "byte limit")
    elif encoding == "one_value" and rows * 784 > MAX_FILL_BYTES:
        expected = (grpc.StatusCode.RESOURCE_EXHAUSTED, "filled from one value")
    elif rows > MAX_REQUEST_ROWS:
        expected = (grpc.StatusCode.INVALID_ARGUMENT, f"Task size {rows} is larger than maximum input batch size")
    else:
        expected = None
    try:
        response = stub[0].Predict(request, timeout=ANSWER_SECONDS)
    except grpc.RpcError as exc:
        event(exc.code().name)
        assert expected is not None and exc.code() == expected[0] and expected[1] in (exc.details() or ""), (
            rows,
            encoding,
            exc.code(),
            exc.details(),
        )
    else:
        event("OK")
        assert expected is None, (rows, encoding, "accepted")
        assert_correct_prediction(request, response, oracle)


@settings(PROPERTY, max_examples=100)
@given(payload=st.binary(max_size=200))
def test_random_bytes_as_a_predict_request_get_a_typed_error(payload: bytes, stub: Any, peak: None) -> None:
    raw = stub[1].unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as info:
        raw(payload, timeout=ANSWER_SECONDS)
    assert info.value.code() in CLIENT_ERRORS, (info.value.code(), info.value.details())


# ---- JSON documents -------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
)
ANY_JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
POISON = st.sampled_from([True, False, None, "1", -1, 256, 0.5, 2**64, float("nan"), float("inf"), [0], {}])
JSON_MUTATIONS = ["poison", "size", "batch", "signature", "format", "any", "deep", "both_keys"]


@st.composite
def predict_documents(draw: st.DrawFn) -> bytes:
    """A valid predict body (row or columnar, named or not) with some mutations applied."""
    mutations = set(draw(st.lists(st.sampled_from(JSON_MUTATIONS), max_size=2)))
    if "deep" in mutations:
        depth = draw(st.sampled_from([5, 64, 1025, 5000, 200_000]))
        return b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"
    if "any" in mutations:
        return json.dumps(draw(ANY_JSON)).encode()
    batch = draw(st.integers(0, 3)) if "batch" in mutations else draw(st.integers(1, 3))
    rows, cols = draw(st.sampled_from([(27, 28), (28, 29), (1, 1), (0, 0)])) if "size" in mutations else (28, 28)
    images: Any = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, (batch, rows, cols)).tolist()
    if "poison" in mutations and batch and rows:
        i, r, c = draw(st.integers(0, batch - 1)), draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))
        images[i][r][c] = draw(POISON)
    if "format" in mutations:
        images = draw(st.sampled_from([images[0] if images else [], {"image": images}, [images], "images", 0]))
    kind = draw(st.sampled_from(["instances", "inputs", "named_rows", "named_columns"]))
    value = {
        "named_rows": [{"image": image} for image in images] if isinstance(images, list) else images,
        "named_columns": {"image": images},
    }.get(kind, images)
    body: dict[str, Any] = {"instances" if kind in ("instances", "named_rows") else "inputs": value}
    if "both_keys" in mutations:
        body["inputs" if "instances" in body else "instances"] = value
    if "signature" in mutations:
        body["signature_name"] = draw(st.sampled_from(["nope", 5, ["x"], None, {"a": 1}]))
    elif draw(st.booleans()):
        body["signature_name"] = "serving_default"
    return json.dumps(body).encode()


def expected_images(body: bytes) -> np.ndarray:
    """The images of a document the server accepted, read independently of the server's code."""
    doc = json.loads(body)
    value = doc.get("instances", doc.get("inputs"))
    if isinstance(value, dict):
        value = value["image"]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        value = [row["image"] for row in value]
    flat = np.asarray(value, dtype=object).ravel()
    assert all(type(x) in (int, float) and float(x).is_integer() and 0 <= x <= 255 for x in flat), "accepted bad pixels"
    return np.asarray(value, dtype=np.float64).astype(np.uint8)


@PROPERTY
@given(body=predict_documents(), version=st.sampled_from(["", "/versions/1", "", "/versions/7", "/labels/x"]))
def test_random_json_documents_get_a_prediction_or_a_typed_error(
    body: bytes, version: str, http: httpx.Client, oracle: Oracle, tiny_served: Served, peak: None
) -> None:
    started = time.monotonic()
    reply = http.post(f"/v1/models/fmtune{version}:predict", content=body)
    assert time.monotonic() - started < ANSWER_SECONDS
    payload = reply.json()
    event(str(reply.status_code))
    if reply.status_code == 200:
        images = expected_images(body)
        assert images.ndim == 3 and images.shape[1:] == (28, 28) and len(images)
        expected = oracle(images)
        doc = json.loads(body)
        if "instances" in doc:
            got = payload["predictions"]
            assert [p["class_id"] for p in got] == expected["class_id"].tolist()
            assert np.allclose([p["probabilities"] for p in got], expected["probabilities"], atol=1e-6)
        else:
            assert payload["outputs"]["class_id"] == expected["class_id"].tolist()
            assert np.allclose(payload["outputs"]["probabilities"], expected["probabilities"], atol=1e-6)
    else:
        assert reply.status_code in HTTP_CLIENT_ERRORS, (reply.status_code, payload)
        assert isinstance(payload["error"], str) and payload["error"]
    assert tiny_served.alive()
