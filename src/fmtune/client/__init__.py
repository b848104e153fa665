"""The fmtune client SDK: predictions from a served model over gRPC or REST, without TensorFlow."""

from fmtune.client.core import FmtuneClient
from fmtune.client.errors import (
    FmtuneClientError,
    InvalidInputError,
    ModelNotFoundError,
    RequestTimeoutError,
    ServerError,
    ServerUnavailableError,
)
from fmtune.client.types import ModelInfo, ModelMetadata, Prediction, TensorSpec, VersionStatus

__all__ = [
    "FmtuneClient",
    "FmtuneClientError",
    "InvalidInputError",
    "ModelInfo",
    "ModelMetadata",
    "ModelNotFoundError",
    "Prediction",
    "RequestTimeoutError",
    "ServerError",
    "ServerUnavailableError",
    "TensorSpec",
    "VersionStatus",
]
