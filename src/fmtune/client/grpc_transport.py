"""gRPC to TF Serving's PredictionService and ModelService, with fmtune's wire-compatible messages."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from fmtune.client import errors
from fmtune.client.transport import CARD_SIGNATURE, RawCard, RawPrediction, Transport, card_image, scalar_bool
from fmtune.client.types import ModelMetadata, TensorSpec, VersionStatus
from fmtune.wire import serving_pb2 as pb
from fmtune.wire.contract import CLASS_NAMES, DARK_BACKGROUND, INPUT, MAX_MESSAGE_BYTES, SIGNATURE
from fmtune.wire.tensors import dtype_name, from_proto, to_proto

PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
GET_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
_ERRORS: dict[grpc.StatusCode, type[errors.FmtuneClientError]] = {
    grpc.StatusCode.NOT_FOUND: errors.ModelNotFoundError,
    grpc.StatusCode.UNAVAILABLE: errors.ServerUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.RequestTimeoutError,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidInputError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.InvalidInputError,
}


def model_spec(name: str, version: int | None, signature: str = "") -> pb.ModelSpec:
    spec = pb.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        spec.version.value = version
    return spec


def predict_request(name: str, batch: np.ndarray, version: int | None, signature: str = SIGNATURE) -> pb.PredictRequest:
    request = pb.PredictRequest(model_spec=model_spec(name, version, signature))
    request.inputs[INPUT].CopyFrom(to_proto(batch))
    return request


def _spec(info: pb.TensorInfo) -> TensorSpec:
    shape = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
    return TensorSpec(dtype=dtype_name(info.dtype), shape=shape)


class GrpcTransport(Transport):
    def __init__(self, target: str, model_name: str):
        super().__init__(target, model_name)
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._predict = self._channel.unary_unary(
            PREDICT,
            request_serializer=pb.PredictRequest.SerializeToString,
            response_deserializer=pb.PredictResponse.FromString,
        )
        self._metadata = self._channel.unary_unary(
            GET_METADATA,
            request_serializer=pb.GetModelMetadataRequest.SerializeToString,
            response_deserializer=pb.GetModelMetadataResponse.FromString,
        )
        self._status = self._channel.unary_unary(
            GET_STATUS,
            request_serializer=pb.GetModelStatusRequest.SerializeToString,
            response_deserializer=pb.GetModelStatusResponse.FromString,
        )

    def _call(self, method: Any, request: Any, timeout: float) -> Any:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
            cls = _ERRORS.get(code, errors.ServerError)
            raise cls(
                f"{self.target} (gRPC) {code.name}: {exc.details() if hasattr(exc, 'details') else exc}"
            ) from None

    def predict(self, batch: np.ndarray, version: int | None, timeout: float) -> RawPrediction:
        response = self._call(self._predict, predict_request(self.model_name, batch, version), timeout)
        try:
            probabilities = from_proto(response.outputs["probabilities"]).astype(np.float32)
            class_ids = from_proto(response.outputs["class_id"]).astype(np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.ServerError(f"{self.target}: unexpected predict response ({exc})") from None
        return RawPrediction(probabilities, class_ids, int(response.model_spec.version.value))

    def card(self, version: int, image_shape: tuple[int, ...], timeout: float) -> RawCard:
        request = predict_request(self.model_name, card_image(image_shape), version, CARD_SIGNATURE)
        response = self._call(self._predict, request, timeout)
        try:
            names = response.outputs[CLASS_NAMES]
            if names.dtype != pb.DT_STRING:
                raise TypeError(f"class_names is {dtype_name(names.dtype)}, not DT_STRING")
            dark = scalar_bool(from_proto(response.outputs[DARK_BACKGROUND]), DARK_BACKGROUND)
            return RawCard([name.decode("utf-8") for name in names.string_val], dark)
        except (KeyError, TypeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise errors.ServerError(f"{self.target}: unexpected {CARD_SIGNATURE} response ({exc})") from None

    def status(self, version: int | None, timeout: float) -> list[VersionStatus]:
        request = pb.GetModelStatusRequest(model_spec=model_spec(self.model_name, version))
        response = self._call(self._status, request, timeout)
        return [
            VersionStatus(
                version=s.version,
                state=pb.ModelVersionStatus.State.Name(s.state),
                error_code=_code_name(s.status.error_code),
                error_message=s.status.error_message,
            )
            for s in response.model_version_status
        ]

    def metadata(self, version: int | None, timeout: float) -> ModelMetadata:
        request = pb.GetModelMetadataRequest(
            model_spec=model_spec(self.model_name, version), metadata_field=["signature_def"]
        )
        response = self._call(self._metadata, request, timeout)
        # The Any's type URL names TF's SignatureDefMap; the bytes are those of ours.
        signatures = pb.SignatureDefMap.FromString(response.metadata["signature_def"].value)
        if SIGNATURE not in signatures.signature_def:
            raise errors.ServerError(f"{self.target}: model has no '{SIGNATURE}' signature")
        sig = signatures.signature_def[SIGNATURE]
        return ModelMetadata(
            name=response.model_spec.name,
            version=response.model_spec.version.value,
            signature_name=SIGNATURE,
            inputs={k: _spec(v) for k, v in sig.inputs.items()},
            outputs={k: _spec(v) for k, v in sig.outputs.items()},
            signatures=sorted(signatures.signature_def),
        )

    def close(self) -> None:
        self._channel.close()


def _code_name(code: int) -> str:
    return (
        grpc.StatusCode.OK.name
        if code == 0
        else next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))
    )
