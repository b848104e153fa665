"""The contract every transport keeps; ``FmtuneClient`` adds retries and class names on top."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from fmtune.client.types import ModelMetadata, VersionStatus


@dataclass(frozen=True)
class RawPrediction:
    probabilities: np.ndarray  # float32 (N, classes)
    class_ids: np.ndarray  # int64 (N,)
    version: int


class Transport(ABC):
    """One way to reach a TF Serving-compatible server.

    Every method takes a timeout in seconds and raises only the SDK's errors:
    ``ServerUnavailableError`` when the server cannot be reached (the only retryable one),
    ``RequestTimeoutError``, ``ModelNotFoundError``, ``InvalidInputError`` for a rejected request,
    and ``ServerError`` for anything else.
    """

    def __init__(self, target: str, model_name: str):
        self.target, self.model_name = target, model_name

    @abstractmethod
    def predict(self, batch: np.ndarray, version: int | None, timeout: float) -> RawPrediction: ...

    @abstractmethod
    def status(self, version: int | None, timeout: float) -> list[VersionStatus]: ...

    @abstractmethod
    def metadata(self, version: int | None, timeout: float) -> ModelMetadata: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
