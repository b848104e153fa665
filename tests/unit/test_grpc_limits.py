"""What a gRPC call can make either gRPC server hold, over real loopback servers built by
``fmtune.aio_server``: the model server (64 MiB receive limit, bounded calls in progress) and the
coordinator's Oracle service (gRPC's default 4 MiB).

A compressed message is checked against the receive limit after it is decompressed: grpcio 1.85
refuses a small gzip message that inflates past the limit with RESOURCE_EXHAUSTED before any handler
sees it. These tests are the regression guard for that, on both servers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fmtune.aio_server import AioServer
from fmtune.serving import grpc_api
from fmtune.serving.models import AVAILABLE, ModelManager, Servable, Signature
from fmtune.serving.runner import Runner
from fmtune.tuning import kt_internals, servicer
from fmtune.tuning.roles import free_port
from fmtune.wire.contract import MAX_MESSAGE_BYTES

from .conftest import service_oracle

GZIP = grpc.Compression.Gzip
SENDER = [("grpc.max_send_message_length", -1)]  # the client sends whatever it is asked to


class Held:
    """A served model whose calls wait for ``release``, so a test decides how many are in progress."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = threading.Semaphore(0)

    def __call__(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        self.running.release()
        self.release.wait(20)
        return {"class_id": tf.zeros([image.shape[0]], tf.int64)}

    def servable(self) -> Servable:
        signature = Signature(self, {"image": tf.TensorSpec([None, 2], tf.uint8)}, ("class_id",), batched=True)
        return Servable(1, Path("."), state=AVAILABLE, signatures={"serving_default": signature})


class OneModel(ModelManager):
    """Serves ``servable`` without a model repository."""

    def __init__(self, directory: Path, servable: Servable | None):
        super().__init__(directory, "fmtune")
        self.servable = servable

    def latest(self) -> Servable | None:
        return self.servable


class ModelServer:
    def __init__(self, directory: Path, servable: Servable | None = None, max_concurrent_rpcs: int = 64):
        self.runner = Runner()
        self.target = f"127.0.0.1:{free_port()}"
        self.grpc = grpc_api.start(OneModel(directory, servable), self.runner, self.target, max_concurrent_rpcs)

    def close(self) -> None:
        self.grpc.stop(grace=0.5)
        self.runner.stop()


def predict_request(data: bytes) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fmtune"
    tensor = request.inputs["image"]
    tensor.dtype = tf.uint8.as_datatype_enum
    tensor.tensor_shape.dim.add(size=len(data) // 2)
    tensor.tensor_shape.dim.add(size=2)
    tensor.tensor_content = data
    return request


def refusal(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, compression=GZIP, timeout=30)
    return info.value.code(), info.value.details() or ""


@pytest.fixture
def model_server(tmp_path: Path) -> Iterator[ModelServer]:
    server = ModelServer(tmp_path, Held().servable())
    yield server
    server.close()


def test_a_small_gzip_message_inflating_past_the_model_servers_limit_is_refused(model_server: ModelServer) -> None:
    over = predict_request(b"\0" * (MAX_MESSAGE_BYTES + 2))
    with grpc.insecure_channel(model_server.target, options=SENDER) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        code, details = refusal(predict, over)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details, (code, details)
        # Under the limit, the same compressed message reaches the server's own checks: the row limit.
        code, details = refusal(predict, predict_request(b"\0" * (1 << 20)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("Task size 524288 is larger"), details


def test_the_model_server_bounds_the_calls_in_progress(tmp_path: Path) -> None:
    held = Held()
    server = ModelServer(tmp_path, held.servable(), max_concurrent_rpcs=2)
    try:
        with grpc.insecure_channel(server.target) as channel, ThreadPoolExecutor(2) as pool:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
            one = predict_request(b"\1\2")
            calls = [pool.submit(predict, one, timeout=30) for _ in range(2)]
            assert held.running.acquire(timeout=20)  # one runs in the model, the other waits behind it
            with pytest.raises(grpc.RpcError) as info:
                predict(one, timeout=30)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
            held.release.set()
            for call in calls:
                assert np.array_equal(tf.make_ndarray(call.result(30).outputs["class_id"]), [0])
            again = predict(one, timeout=30)  # and calls are taken again
            assert np.array_equal(tf.make_ndarray(again.outputs["class_id"]), [0])
    finally:
        held.release.set()
        server.close()


@pytest.fixture(scope="module")
def oracle_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    oracle = service_oracle(tmp_path_factory.mktemp("oracle"))
    oracle.start_background()
    address = f"127.0.0.1:{free_port()}"
    server, _ = servicer.start(oracle, address)
    try:
        yield address
    finally:
        server.stop(grace=0.5)
        oracle.stop_background()


def test_a_small_gzip_message_inflating_past_the_oracles_default_limit_is_refused(oracle_target: str) -> None:
    messages = kt_internals.service_messages()
    with grpc.insecure_channel(oracle_target, options=SENDER) as channel:
        get_trial = kt_internals.service_grpc().OracleStub(channel).GetTrial
        over = messages.GetTrialRequest(trial_id="x" * (4 * 1024 * 1024 + 1))
        code, details = refusal(get_trial, over)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details, (code, details)
        under = messages.GetTrialRequest(trial_id="x" * (3 * 1024 * 1024))
        code, details = refusal(get_trial, under)  # reaches the service, which knows no such trial
        assert code == grpc.StatusCode.NOT_FOUND, (code, details)


def test_aio_server_passes_the_receive_limit_and_the_call_bound_to_grpc(tmp_path: Path) -> None:
    """The shared wrapper on its own: a raw handler never sees a message over the limit, compressed or not."""
    seen: list[int] = []

    async def size(request: bytes, context: Any) -> bytes:
        seen.append(len(request))
        return b"ok"

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(size)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.S", {"M": handler}),))

    address = f"127.0.0.1:{free_port()}"
    server = AioServer(register, address, [("grpc.max_receive_message_length", 1 << 20)], maximum_concurrent_rpcs=4)
    try:
        with grpc.insecure_channel(address, options=SENDER) as channel:
            call = channel.unary_unary("/t.S/M")
            for compression in (GZIP, grpc.Compression.NoCompression):
                with pytest.raises(grpc.RpcError) as info:
                    call(b"\0" * ((1 << 20) + 1), compression=compression, timeout=30)
                assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert call(b"\0" * (1 << 20), compression=GZIP, timeout=30) == b"ok"
        assert seen == [1 << 20]
    finally:
        server.stop(grace=0.5)
