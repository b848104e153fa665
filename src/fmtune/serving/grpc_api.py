"""TF Serving's gRPC services (PredictionService, ModelService) over the model manager."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from fmtune.aio_server import AioServer
from fmtune.client import tensors
from fmtune.serving import predict
from fmtune.serving.models import ModelManager, Servable, ServingError
from fmtune.serving.runner import Runner

MAX_MESSAGE = 64 * 1024 * 1024


def _to_array(proto: Any) -> np.ndarray:
    """The common numeric case without TensorFlow's slower general path."""
    try:
        return tensors.from_proto(proto)
    except (TypeError, ValueError):
        return tf.make_ndarray(proto)


def _to_proto(value: np.ndarray) -> Any:
    try:
        return tensors.to_proto(value, tensor_pb2.TensorProto)
    except TypeError:
        return tf.make_tensor_proto(value)


def _version(spec: Any) -> int | None:
    return spec.version.value if spec.HasField("version") else None


def _fill_spec(target: Any, name: str, servable: Servable, signature_name: str = "") -> None:
    target.name = name
    target.version.value = servable.version
    target.signature_name = signature_name


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, runner: Runner):
        self.manager, self.runner = manager, runner

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            spec = request.model_spec
            servable = self.manager.resolve(spec.name, _version(spec), spec.version_label or None)
            inputs = {name: _to_array(proto) for name, proto in request.inputs.items()}
            job = self.runner.submit(servable, spec.signature_name, inputs, request.output_filter)
            outputs = await asyncio.wrap_future(job)
        except ServingError as exc:
            await context.abort(exc.code, exc.message)
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, self.manager.name, servable, spec.signature_name or predict.DEFAULT_SIGNATURE)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(_to_proto(value))
        return response

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            fields = list(request.metadata_field)
            if fields != ["signature_def"]:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Metadata field {fields} is not supported"
                    if fields
                    else "GetModelMetadataRequest must specify at least one metadata_field",
                )
            spec = request.model_spec
            servable = self.manager.resolve(spec.name, _version(spec), spec.version_label or None)
        except ServingError as exc:
            await context.abort(exc.code, exc.message)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(response.model_spec, self.manager.name, servable)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in servable.signature_defs.items():
            signatures.signature_def[name].CopyFrom(sig)
        response.metadata["signature_def"].Pack(signatures)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self.manager = manager

    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            found = self.manager.statuses(request.model_spec.name, _version(request.model_spec))
        except ServingError as exc:
            await context.abort(exc.code, exc.message)
        response = get_model_status_pb2.GetModelStatusResponse()
        for servable in found:
            status = response.model_version_status.add(version=servable.version, state=servable.state)
            if servable.error:
                status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                status.status.error_message = servable.error
        return response


def start(manager: ModelManager, runner: Runner, address: str) -> AioServer:
    """The services on grpc.aio: the event loop decodes and encodes while ``runner`` runs the model."""

    def register(server: grpc.aio.Server) -> None:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager, runner), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager), server)

    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
    ]
    return AioServer(register, address, options)
