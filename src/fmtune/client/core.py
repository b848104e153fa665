"""``FmtuneClient``: one API over gRPC and REST, with timeouts and retries set in one place."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import TypeAdapter

from fmtune.client import errors
from fmtune.client.images import orient, to_batch
from fmtune.client.transport import Transport
from fmtune.client.types import ModelMetadata, Prediction, VersionStatus
from fmtune.data import DATASETS

T = TypeVar("T")
# One validator for a whole batch: cheaper per prediction than building each one (reports/serving.md).
_PREDICTIONS = TypeAdapter(list[Prediction])
DEFAULT_GRPC_PORT = 8500


def make_transport(target: str, model_name: str) -> Transport:
    """``http(s)://host:port`` speaks REST; ``grpc://host:port`` or ``host:port`` speaks gRPC."""
    if target.startswith(("http://", "https://")):
        from fmtune.client.rest_transport import RestTransport

        return RestTransport(target, model_name)
    from fmtune.client.grpc_transport import GrpcTransport

    address = target.removeprefix("grpc://")
    if ":" not in address.rsplit("]", 1)[-1]:
        address = f"{address}:{DEFAULT_GRPC_PORT}"
    return GrpcTransport(address, model_name)


class FmtuneClient:
    """Predict with a served fmtune model.

    >>> with FmtuneClient("localhost:8500") as client:        # gRPC
    ...     client.predict(images)[0].class_name
    >>> FmtuneClient("http://localhost:8501").status()       # REST

    Every call has a timeout (seconds). Only "server unavailable" is retried, ``retries`` times,
    with exponential backoff starting at ``backoff`` seconds.
    """

    def __init__(
        self,
        target: str,
        *,
        model_name: str = "fmtune",
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        class_names: Sequence[str] | None = None,
        dataset: str = "fashion_mnist",
    ):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.target, self.model_name, self.timeout = target, model_name, timeout
        self.retries, self.backoff = max(0, retries), backoff
        self.class_names = list(class_names) if class_names is not None else list(DATASETS[dataset].class_names)
        self._transport = make_transport(target, model_name)

    def _with_retries(self, call: Callable[[], T]) -> T:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return call()
            except errors.ServerUnavailableError:
                if attempt == self.retries:
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def predict(self, images: Any, *, version: int | None = None, invert: bool | None = None) -> list[Prediction]:
        """Classify one image or a batch: numpy uint8 (28,28)/(N,28,28), floats in [0,1], PIL images or paths.

        The models learn light objects on a dark background. By default an image whose border is
        light (a product photo on white) is inverted first; ``invert=True`` or ``False`` forces it.
        """
        batch, _ = orient(to_batch(images), invert)
        raw = self._with_retries(lambda: self._transport.predict(batch, version, self.timeout))
        if raw.probabilities.shape != (len(batch), len(self.class_names)) or raw.class_ids.shape != (len(batch),):
            raise errors.ServerError(
                f"{self.target}: expected {len(batch)} predictions over {len(self.class_names)} classes, got "
                f"probabilities {raw.probabilities.shape} and class ids {raw.class_ids.shape}"
            )
        if ((raw.class_ids < 0) | (raw.class_ids >= len(self.class_names))).any():
            raise errors.ServerError(f"{self.target}: class ids outside 0..{len(self.class_names) - 1}")
        names, version = self.class_names, raw.version
        return _PREDICTIONS.validate_python(
            [
                {"class_id": cid, "class_name": names[cid], "probabilities": probs, "model_version": version}
                for cid, probs in zip(raw.class_ids.tolist(), raw.probabilities.tolist(), strict=True)
            ]
        )

    def status(self, version: int | None = None) -> list[VersionStatus]:
        return self._with_retries(lambda: self._transport.status(version, self.timeout))

    def metadata(self, version: int | None = None) -> ModelMetadata:
        return self._with_retries(lambda: self._transport.metadata(version, self.timeout))

    def wait_until_ready(self, timeout: float = 60.0, poll: float = 0.25) -> int:
        """Block until some version is AVAILABLE (not merely until the server answers); return it."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                available = [
                    s.version
                    for s in self._transport.status(None, min(self.timeout, timeout))
                    if s.state == "AVAILABLE"
                ]
                if available:
                    return max(available)
            except (errors.ServerUnavailableError, errors.ModelNotFoundError, errors.RequestTimeoutError) as exc:
                last = exc
            time.sleep(poll)
        raise errors.RequestTimeoutError(
            f"{self.target}: model '{self.model_name}' not AVAILABLE after {timeout}s" + (f" ({last})" if last else "")
        )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> FmtuneClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
