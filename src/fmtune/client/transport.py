"""The contract every transport keeps; ``FmtuneClient`` adds retries, image preparation and class
names on top."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from fmtune.client.types import ModelMetadata, VersionStatus
from fmtune.wire.contract import CARD_SIGNATURE

__all__ = ["CARD_SIGNATURE", "RawCard", "RawPrediction", "Transport", "card_image", "scalar_bool"]


@dataclass(frozen=True)
class RawPrediction:
    probabilities: np.ndarray  # float32 (N, classes)
    class_ids: np.ndarray  # int64 (N,)
    version: int


@dataclass(frozen=True)
class RawCard:
    """The ``fmtune_card`` signature's outputs, as the server sent them."""

    class_names: list[str]
    dark_background: bool


def card_image(image_shape: tuple[int, ...]) -> np.ndarray:
    """The one zero image a card request sends (the card ignores it; the signature needs one)."""
    return np.zeros((1, *(max(d, 1) for d in image_shape)), np.uint8)


def scalar_bool(value: np.ndarray, what: str) -> bool:
    """A bool the server may send as shape [] or, batched by mistake, as [1]."""
    if value.size != 1:
        raise ValueError(f"{what} holds {value.size} values, expected one")
    return bool(value.reshape(-1)[0])


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
    def card(self, version: int, image_shape: tuple[int, ...], timeout: float) -> RawCard:
        """The version's ``fmtune_card`` outputs: one Predict call on a zero image of ``image_shape``."""

    @abstractmethod
    def status(self, version: int | None, timeout: float) -> list[VersionStatus]: ...

    @abstractmethod
    def metadata(self, version: int | None, timeout: float) -> ModelMetadata: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
