"""The REST API's error answers with real models loaded: each one the status TF Serving gives and its
JSON body, ``{"error": "..."}``."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmtune.serving import decode, metrics

from .._builtin_server import Loopback, builtin_server, export_version, tiny_model

IMAGE = np.arange(784, dtype=np.uint8).reshape(28, 28).tolist()
INTERNAL = {"error": "internal error (details in the server log)"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    """The tiny MLP: one input, ``image``."""
    repo = tmp_path_factory.mktemp("mlp")
    export_version(tiny_model(seed=7), repo)
    with builtin_server(repo) as server:
        server.wait_for(1)
        yield server


def saved(module: tf.Module, signature: Any, repo: Path) -> Path:
    tf.saved_model.save(module, str(repo / "fmtune" / "1"), signatures={"serving_default": signature})
    return repo


class ReadsAMissingFile(tf.Module):
    """Fails at run time with a TensorFlow error that says nothing about the request."""

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name="image")])
    def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        size = tf.cast(tf.strings.length(tf.io.read_file("/srv/secret-place/weights.bin")), tf.float32)
        return {"probabilities": tf.zeros([tf.shape(image)[0], 10]) + size}


class TwoInputs(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 2], tf.float32)])
    def serve(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"sum": a + b}


def serving(module: Any, folder: Path) -> Iterator[Loopback]:
    with builtin_server(saved(module, module.serve, folder)) as server:
        server.wait_for(1)
        yield server


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    yield from serving(ReadsAMissingFile(), tmp_path_factory.mktemp("failing"))


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loopback]:
    yield from serving(TwoInputs(), tmp_path_factory.mktemp("two-inputs"))


def predict(server: Loopback, body: Any, path: str = "/v1/models/fmtune:predict") -> tuple[int, Any]:
    reply = httpx.post(server.rest_target + path, content=json.dumps(body).encode(), timeout=20)
    assert reply.headers["content-type"] == "application/json"
    return reply.status_code, reply.json()


def get(server: Loopback, path: str) -> tuple[int, Any]:
    reply = httpx.get(server.rest_target + path, timeout=20)
    assert reply.headers["content-type"] == "application/json"
    return reply.status_code, reply.json()


def test_a_model_failing_at_run_time_is_a_generic_500_and_internal_over_grpc(
    failing: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    assert predict(failing, {"instances": [IMAGE]}) == (500, INTERNAL)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fmtune"
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 28, 28), np.uint8)))
    with grpc.insecure_channel(failing.grpc_target) as channel, pytest.raises(grpc.RpcError) as info:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=20)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INTERNAL, INTERNAL["error"])
    assert "secret-place" in caplog.text  # the details are in the log, not in the answers
    assert get(failing, "/v1/models/fmtune")[0] == 200  # and the server goes on


def test_a_decoded_tensor_over_the_size_limit_is_413_not_429(served: Loopback, monkeypatch: pytest.MonkeyPatch) -> None:
    """Too large, not too frequent. A JSON body under the body limit never decodes to a uint8
    tensor over it, so the tensor limit is lowered to reach this answer."""
    monkeypatch.setattr(decode, "MAX_MESSAGE_BYTES", 1000)
    assert predict(served, {"instances": [IMAGE, IMAGE]}) == (
        413,
        {"error": "input 'image' of shape [2, 28, 28] holds 1568 uint8 values, over the 1000 byte limit"},
    )
    assert predict(served, {"instances": [IMAGE]})[0] == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("GET", "/nowhere"), ("GET", "/v1"), ("GET", "/v2/models/fmtune"), ("POST", "/metrics")],
)
def test_a_path_outside_v1_is_404_naming_it(served: Loopback, method: str, path: str) -> None:
    reply = httpx.request(method, f"{served.rest_target}{path}?q=1", content=b"{}", timeout=20)
    assert (reply.status_code, reply.json()) == (404, {"error": f"Not found: {path}"})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/fmtune/versions/1/extra"),
        ("GET", "/v1/models/fmtune/labels/"),
        ("GET", "/v1/models/fmtune/labels/a:b"),
        ("POST", "/v1/models/fmtune/labels/:predict"),
    ],
)
def test_a_path_under_v1_that_is_no_api_is_a_malformed_request(served: Loopback, method: str, path: str) -> None:
    reply = httpx.request(method, served.rest_target + path, content=b"{}", timeout=20)
    assert (reply.status_code, reply.json()) == (400, {"error": f"Malformed request: {method} {path}"})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models/fmtune/labels/stable/metadata"),
        ("POST", "/v1/models/fmtune/labels/stable:predict"),
    ],
)
def test_a_version_label_is_not_recognised(served: Loopback, method: str, path: str) -> None:
    """The built-in server has no labels: TF Serving's INVALID_ARGUMENT, as 400."""
    body = json.dumps({"instances": [IMAGE]}).encode() if method == "POST" else None
    reply = httpx.request(method, served.rest_target + path, content=body, timeout=20)
    assert (reply.status_code, reply.json()) == (400, {"error": "Unrecognized servable version label: stable"})


def test_a_label_of_another_model_is_that_model_not_found(served: Loopback) -> None:
    assert predict(served, {"instances": [IMAGE]}, "/v1/models/other/labels/stable:predict") == (
        404,
        {"error": "Servable not found for request: Latest(other)"},
    )


def missing_image(sent: list[str]) -> str:
    return (
        f"input size does not match signature: {len(sent)}!=1 len({sent}) != len(['image']). "
        f"Sent extra: {sent}. Missing but required: ['image']."
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"instances": [{"pixels": IMAGE}]}, "instances name inputs the signature does not have: ['pixels']"),
        (
            {"instances": [{"image": IMAGE, "pixels": IMAGE}]},
            "instances name inputs the signature does not have: ['pixels']",
        ),
        ({"instances": [{"image": IMAGE}, {"img": IMAGE}]}, "every instance must name the same inputs"),
        ({"instances": [{}]}, missing_image([])),
        ({"inputs": {"pixels": [IMAGE]}}, "inputs the signature does not have: ['pixels']"),
        ({"inputs": {"image": [IMAGE], "pixels": [IMAGE]}}, "inputs the signature does not have: ['pixels']"),
        ({"inputs": {}}, missing_image([])),
    ],
)
def test_an_input_the_signature_does_not_have_is_400_in_either_format(
    served: Loopback, body: dict[str, Any], error: str
) -> None:
    assert predict(served, body) == (400, {"error": error})


def test_inputs_named_as_the_signature_names_them_predict_in_either_format(served: Loopback) -> None:
    status, rows = predict(served, {"instances": [{"image": IMAGE}, {"image": IMAGE}]})
    assert status == 200 and [sorted(r) for r in rows["predictions"]] == [["class_id", "probabilities"]] * 2
    status, columns = predict(served, {"inputs": {"image": [IMAGE]}})
    assert status == 200 and sorted(columns["outputs"]) == ["class_id", "probabilities"]
    np.testing.assert_allclose(
        columns["outputs"]["probabilities"][0], rows["predictions"][0]["probabilities"], atol=1e-6
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"instances": [[1.0, 2.0]]},
            "instances must be objects naming each input when the signature has several inputs",
        ),
        (
            {"inputs": [[1.0, 2.0]]},
            "'inputs' must be an object naming each input when the signature has several inputs",
        ),
        (
            {"instances": [{"a": [1.0, 2.0]}]},
            "input size does not match signature: 1!=2 len(['a']) != len(['a', 'b']). "
            "Sent extra: []. Missing but required: ['b'].",
        ),
        ({"inputs": {"a": [[1.0, 2.0]], "c": [[1.0, 2.0]]}}, "inputs the signature does not have: ['c']"),
    ],
)
def test_several_inputs_must_each_be_named(two_inputs: Loopback, body: dict[str, Any], error: str) -> None:
    assert predict(two_inputs, body) == (400, {"error": error})


def test_several_inputs_named_predict_in_either_format(two_inputs: Loopback) -> None:
    rows = {"instances": [{"a": [1.0, 2.0], "b": [10.0, 20.0]}]}
    assert predict(two_inputs, rows) == (200, {"predictions": [[11.0, 22.0]]})
    columns = {"inputs": {"a": [[1.0, 2.0]], "b": [[10.0, 20.0]]}}
    assert predict(two_inputs, columns) == (200, {"outputs": [[11.0, 22.0]]})


def test_a_body_shorter_than_its_length_then_closed_gets_no_answer(served: Loopback) -> None:
    """Nothing half-read is ever answered as a request."""
    with socket.create_connection(("127.0.0.1", served.rest_port), timeout=10) as sock:
        head = "POST /v1/models/fmtune:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        sock.sendall(head.encode() + b'{"instances": ')
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(65536) == b""


def predicts_counted(server: Loopback) -> dict[tuple[str, str], float]:
    """The served page's predict counts, by model and status code name."""
    page = httpx.get(server.rest_target + metrics.PATH, timeout=20).text
    return {
        (sample.labels["model_name"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(page)
        if family.name == ":tensorflow:serving:request_count"  # the parser names its samples <name>_total
        for sample in family.samples
    }


def test_a_predict_refused_before_the_data_plane_is_counted_under_its_statuses_code(served: Loopback) -> None:
    """Refusals of the body count as TF Serving counts the data plane's own errors: 413 as
    RESOURCE_EXHAUSTED, an encoding it cannot read as INVALID_ARGUMENT; a status call not at all."""
    before = predicts_counted(served)
    with socket.create_connection(("127.0.0.1", served.rest_port), timeout=10) as sock:
        head = f"POST /v1/models/fmtune:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 40}\r\n\r\n"
        sock.sendall(head.encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    reply = httpx.post(
        served.rest_target + "/v1/models/fmtune:predict", content=b"{}", headers={"Content-Encoding": "br"}, timeout=20
    )
    assert reply.status_code == 415
    assert get(served, "/v1/models/fmtune")[0] == 200
    after = predicts_counted(served)
    grown = {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}
    assert grown == {("fmtune", "RESOURCE_EXHAUSTED"): 1.0, ("fmtune", "INVALID_ARGUMENT"): 1.0}


def test_a_grpc_status_call_is_not_counted_as_a_predict(served: Loopback) -> None:
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    before = predicts_counted(served)
    with grpc.insecure_channel(served.grpc_target) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "fmtune"
        model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=20)
    assert predicts_counted(served) == before
