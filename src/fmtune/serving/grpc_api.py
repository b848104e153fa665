"""TF Serving's gRPC services (PredictionService, ModelService): protobufs in and out of the data plane.

Requests are decoded with parsers that never raise, so a message that is not a valid protobuf is
answered INVALID_ARGUMENT rather than by gRPC's own INTERNAL. A request's mistake gets the status
code its kind maps to (``STATUS``); anything unexpected gets INTERNAL with a generic message, and
the details go to the log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from fmtune.aio_server import AioServer
from fmtune.serving import decode
from fmtune.serving.dataplane import DataPlane, Target
from fmtune.serving.errors import Kind, ServingError, invalid
from fmtune.serving.limits import MAX_CONCURRENT_RPCS
from fmtune.serving.metrics import ServingMetrics
from fmtune.serving.models import ModelManager
from fmtune.serving.runner import Runner
from fmtune.wire import tensors
from fmtune.wire.contract import MAX_MESSAGE_BYTES

log = logging.getLogger("fmtune")
Method = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]
STATUS = {
    Kind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Kind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}


class _Undecodable:
    """Stands in for a request whose bytes do not parse as its message type."""


UNDECODABLE = _Undecodable()


def _parser(message: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except Exception:  # any bytes at all may arrive
            return UNDECODABLE

    return parse


def _answered(*, counted: bool = False) -> Callable[[Method], Method]:
    """Turn a method's outcome into its gRPC status: typed for the client's mistakes, generic
    otherwise. A ``counted`` method (predict) is counted with its status, as TF Serving counts it."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, code = time.perf_counter(), grpc.StatusCode.CANCELLED  # if the call ends otherwise
            try:
                if request is UNDECODABLE:
                    code = grpc.StatusCode.INVALID_ARGUMENT
                    await context.abort(code, "the request is not a valid protobuf message")
                try:
                    answer = await method(self, request, context)
                    code = grpc.StatusCode.OK
                    return answer
                except ServingError as exc:
                    code = STATUS[exc.kind]
                    await context.abort(code, exc.message)
                except Exception:
                    log.exception("%s failed", method.__name__)
                    code = grpc.StatusCode.INTERNAL
                    await context.abort(code, "internal error (details in the server log)")
            finally:
                if counted:
                    model = "" if request is UNDECODABLE else request.model_spec.name
                    self.dataplane.predicted(model, "GRPC", code.name, time.perf_counter() - started)

        return wrapper

    return decorate


def _to_proto(value: Any) -> Any:
    try:
        return tensors.to_proto(value, tensor_pb2.TensorProto)
    except TypeError:
        return tf.make_tensor_proto(value)


def _target(request: Any) -> Target:
    """The model a request's ModelSpec names: TF Serving refuses a request without one rather than guess."""
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    spec = request.model_spec
    return Target(spec.name, spec.version.value if spec.HasField("version") else None, spec.version_label or None)


def _fill_spec(target: Any, name: str, version: int, signature_name: str = "") -> None:
    target.name = name
    target.version.value = version
    target.signature_name = signature_name


class PredictionService:
    def __init__(self, dataplane: DataPlane):
        self.dataplane = dataplane

    @_answered(counted=True)
    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        target = _target(request)
        inputs = functools.partial(decode.tensors, protos=request.inputs)
        prediction = self.dataplane.predict(target, request.model_spec.signature_name, inputs, request.output_filter)
        outputs = await asyncio.wrap_future(prediction.outputs)
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, self.dataplane.name, prediction.version, prediction.signature)
        for output, value in outputs.items():
            response.outputs[output].CopyFrom(_to_proto(value))
        return response

    @_answered()
    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        target = _target(request)
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid(f"Metadata field {field} is not supported")
        metadata = self.dataplane.metadata(target)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, metadata.name, metadata.version)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for signature, definition in metadata.signature_defs.items():
            signatures.signature_def[signature].CopyFrom(definition)
        response.metadata["signature_def"].Pack(signatures)
        return response


class ModelService:
    def __init__(self, dataplane: DataPlane):
        self.dataplane = dataplane

    @_answered()
    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in self.dataplane.status(_target(request)):
            status = response.model_version_status.add(version=version.version, state=version.state)
            if version.error:
                status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                status.status.error_message = version.error
        return response


def _service(name: str, methods: dict[str, tuple[Callable[..., Awaitable[Any]], Any, Any]]) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        name,
        {
            method: grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=_parser(request), response_serializer=response.SerializeToString
            )
            for method, (fn, request, response) in methods.items()
        },
    )


def start(
    manager: ModelManager,
    runner: Runner,
    address: str,
    max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS,
    metrics: ServingMetrics | None = None,
) -> AioServer:
    """The services on grpc.aio: the event loop decodes and encodes while ``runner`` runs the model.
    At most ``max_concurrent_rpcs`` calls are in progress; gRPC refuses one more RESOURCE_EXHAUSTED."""
    dataplane = DataPlane(manager, runner, metrics)
    prediction, models = PredictionService(dataplane), ModelService(dataplane)

    def register(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers(
            (
                _service(
                    "tensorflow.serving.PredictionService",
                    {
                        "Predict": (prediction.Predict, predict_pb2.PredictRequest, predict_pb2.PredictResponse),
                        "GetModelMetadata": (
                            prediction.GetModelMetadata,
                            get_model_metadata_pb2.GetModelMetadataRequest,
                            get_model_metadata_pb2.GetModelMetadataResponse,
                        ),
                    },
                ),
                _service(
                    "tensorflow.serving.ModelService",
                    {
                        "GetModelStatus": (
                            models.GetModelStatus,
                            get_model_status_pb2.GetModelStatusRequest,
                            get_model_status_pb2.GetModelStatusResponse,
                        )
                    },
                ),
            )
        )

    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    return AioServer(register, address, options, maximum_concurrent_rpcs=max_concurrent_rpcs)
