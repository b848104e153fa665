"""TF Serving's gRPC services (PredictionService, ModelService) over the model manager.

Requests are decoded with parsers that never raise, so a message that is not a valid protobuf is
answered INVALID_ARGUMENT rather than by gRPC's own INTERNAL. A request's mistake gets its typed
code; anything unexpected gets INTERNAL with a generic message, and the details go to the log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
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
from fmtune.client import tensors
from fmtune.serving import decode
from fmtune.serving.models import ModelManager, Servable, ServingError
from fmtune.serving.runner import Runner
from fmtune.wire.contract import MAX_MESSAGE_BYTES, SIGNATURE

log = logging.getLogger("fmtune")
Method = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


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


def _answered(method: Method) -> Method:
    """Turn a method's outcome into its gRPC status: typed for the client's mistakes, generic otherwise."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request is UNDECODABLE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid protobuf message")
        try:
            return await method(self, request, context)
        except ServingError as exc:
            await context.abort(exc.code, exc.message)
        except Exception:
            log.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error (details in the server log)")

    return wrapper


def _to_proto(value: Any) -> Any:
    try:
        return tensors.to_proto(value, tensor_pb2.TensorProto)
    except TypeError:
        return tf.make_tensor_proto(value)


def _spec(request: Any) -> Any:
    """The request's ModelSpec: TF Serving refuses a request without one rather than guess the model."""
    if not request.HasField("model_spec"):
        raise decode.bad("Missing ModelSpec")
    return request.model_spec


def _version(spec: Any) -> int | None:
    return spec.version.value if spec.HasField("version") else None


def _fill_spec(target: Any, name: str, servable: Servable, signature_name: str = "") -> None:
    target.name = name
    target.version.value = servable.version
    target.signature_name = signature_name


class PredictionService:
    def __init__(self, manager: ModelManager, runner: Runner):
        self.manager, self.runner = manager, runner

    @_answered
    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        spec = _spec(request)
        servable = self.manager.resolve(spec.name, _version(spec), spec.version_label or None)
        name = spec.signature_name or SIGNATURE
        inputs = decode.tensors(servable.signature(name).inputs, request.inputs)
        outputs = await asyncio.wrap_future(self.runner.submit(servable, name, inputs, request.output_filter))
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, self.manager.name, servable, name)
        for output, value in outputs.items():
            response.outputs[output].CopyFrom(_to_proto(value))
        return response

    @_answered
    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        spec = _spec(request)
        if not request.metadata_field:
            raise decode.bad("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise decode.bad(f"Metadata field {field} is not supported")
        servable = self.manager.resolve(spec.name, _version(spec), spec.version_label or None)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, self.manager.name, servable)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for signature, definition in servable.signature_defs.items():
            signatures.signature_def[signature].CopyFrom(definition)
        response.metadata["signature_def"].Pack(signatures)
        return response


class ModelService:
    def __init__(self, manager: ModelManager):
        self.manager = manager

    @_answered
    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        spec = _spec(request)
        found = self.manager.statuses(spec.name, _version(spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for servable in found:
            status = response.model_version_status.add(version=servable.version, state=servable.state)
            if servable.error:
                status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                status.status.error_message = servable.error
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


def start(manager: ModelManager, runner: Runner, address: str) -> AioServer:
    """The services on grpc.aio: the event loop decodes and encodes while ``runner`` runs the model."""
    prediction, models = PredictionService(manager, runner), ModelService(manager)

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
    return AioServer(register, address, options)
