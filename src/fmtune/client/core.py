"""``FmtuneClient``: one API over gRPC and REST, with timeouts and retries set in one place.

The client knows nothing of datasets: what a served version takes (its image shape), how its
classes are named and whether its images are light on dark, it asks the server, once per version
(``GetModelMetadata`` and the ``fmtune_card`` signature), so any model fmtune exports is served
to any client the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from pydantic import TypeAdapter

from fmtune.client import errors
from fmtune.client.images import orient, to_batch
from fmtune.client.transport import CARD_SIGNATURE, RawPrediction, Transport
from fmtune.client.types import ModelInfo, ModelMetadata, Prediction, VersionStatus
from fmtune.wire.contract import INPUT, PROBABILITIES

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


def image_shape(target: str, meta: ModelMetadata) -> tuple[int, ...]:
    """One image's shape from the signature's ``image`` input, ``[-1, H, W]`` or ``[-1, H, W, C]``."""
    spec = meta.inputs.get(INPUT)
    if spec is None or spec.dtype != "DT_UINT8" or spec.shape is None or len(spec.shape) not in (3, 4):
        raise errors.ServerError(
            f"{target}: version {meta.version} does not take uint8 images [N, H, W] or [N, H, W, C] as "
            f"'{INPUT}' (its inputs: {meta.inputs})"
        )
    shape = tuple(spec.shape[1:])
    if len(shape) == 3 and shape[2] not in (1, 3):
        raise errors.ServerError(f"{target}: version {meta.version} takes {shape[2]} channels; the SDK sends 1 or 3")
    return shape


class FmtuneClient:
    """Predict with a served fmtune model.

    >>> with FmtuneClient("localhost:8500") as client:        # gRPC
    ...     client.predict(images)[0].class_name
    >>> FmtuneClient("http://localhost:8501").status()       # REST

    Every call has a timeout (seconds). Only "server unavailable" is retried, ``retries`` times,
    with exponential backoff starting at ``backoff`` seconds. ``class_names``, if given, name the
    classes instead of the names the model serves.
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
    ):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.target, self.model_name, self.timeout = target, model_name, timeout
        self.retries, self.backoff = max(0, retries), backoff
        self.class_names = list(class_names) if class_names is not None else None
        self._transport = make_transport(target, model_name)
        self._infos: dict[int, ModelInfo] = {}  # a version number never names another model
        self._latest: ModelInfo | None = None  # the version unpinned requests went to last

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

    def model_info(self, version: int | None = None) -> ModelInfo:
        """What the SDK knows of a version (default: the served one, as this client last saw it), read
        from the server on first use and kept: a version number always names the same model.

        A model without an ``fmtune_card`` signature (exported before fmtune wrote one, or by hand)
        has no class names (predictions are named by class id) and is not taken to want light-on-dark
        images (a light background is inverted only with ``invert=True``).
        """
        if version is None:
            return self._latest or self._resolve_latest()
        if version not in self._infos:
            self._infos[version] = self._read_info(self.metadata(version))
        return self._infos[version]

    def _resolve_latest(self) -> ModelInfo:
        meta = self.metadata(None)
        info = self._infos.get(meta.version) or self._read_info(meta)
        self._infos[info.version] = self._latest = info
        return info

    def _read_info(self, meta: ModelMetadata) -> ModelInfo:
        shape = image_shape(self.target, meta)
        probabilities = meta.outputs.get(PROBABILITIES)
        dims = probabilities.shape if probabilities is not None else None
        num_classes = dims[1] if dims is not None and len(dims) == 2 and dims[1] > 0 else None
        if CARD_SIGNATURE not in meta.signatures:
            return ModelInfo(meta.version, shape, num_classes)
        try:
            card = self._with_retries(lambda: self._transport.card(meta.version, shape, self.timeout))
        except errors.InvalidInputError as exc:  # the server refused the card request itself
            raise errors.ServerError(f"{self.target}: could not read version {meta.version}'s card ({exc})") from None
        if not card.class_names or (num_classes is not None and len(card.class_names) != num_classes):
            raise errors.ServerError(
                f"{self.target}: version {meta.version} serves {len(card.class_names)} class names for "
                f"{num_classes} classes"
            )
        return ModelInfo(meta.version, shape, len(card.class_names), tuple(card.class_names), card.dark_background)

    def _send(
        self, images: Any, info: ModelInfo, version: int | None, invert: bool | None
    ) -> tuple[RawPrediction, np.ndarray]:
        """The images made for ``info``'s version, sent; and which of them were inverted."""
        batch, inverted = orient(to_batch(images, info.image_shape), invert, info.dark_background)
        return self._with_retries(lambda: self._transport.predict(batch, version, self.timeout)), inverted

    def _moved_on(self, info: ModelInfo) -> ModelInfo | None:
        """The served version, if it is no longer ``info``'s (None if it is, or cannot be told)."""
        try:
            latest = self._resolve_latest()
        except errors.FmtuneClientError:
            return None
        return latest if latest.version != info.version else None

    def predict(self, images: Any, *, version: int | None = None, invert: bool | None = None) -> list[Prediction]:
        """Classify one image or a batch: numpy arrays of the model's image shape (uint8, or floats in
        [0, 1]), or PIL images and image files of any size and mode (resized and converted to it).

        A model of light objects on a dark background (its dataset says so) gets an image whose
        border is light (a product photo on white) inverted first; ``invert=True`` or ``False``
        forces it either way, for any model. A model that serves no ``fmtune_card`` is never inverted
        unless forced, and its classes are named by their ids (see ``model_info``).
        """
        remembered = version is None and self._latest is not None
        info = self.model_info(version)
        try:
            raw, inverted = self._send(images, info, version, invert)
        except errors.InvalidInputError:
            # The images fit the version served when we last looked; it may have moved on to one that takes others.
            if not remembered or (newer := self._moved_on(info)) is None:
                raise
            info = newer
            raw, inverted = self._send(images, info, None, invert)
        if raw.version != info.version:  # answered by another version than the images were made for
            answered = self.model_info(raw.version)
            if version is None:
                self._latest = answered
            same_background = invert is not None or answered.dark_background == info.dark_background
            if answered.image_shape != info.image_shape or not same_background:  # made wrong for it: again
                raw, inverted = self._send(images, answered, answered.version, invert)
            info = answered
        return self._predictions(raw, info, inverted)

    def _predictions(self, raw: RawPrediction, info: ModelInfo, inverted: np.ndarray) -> list[Prediction]:
        count = len(inverted)
        if raw.probabilities.ndim != 2 or raw.probabilities.shape[0] != count or raw.class_ids.shape != (count,):
            raise errors.ServerError(
                f"{self.target}: expected {count} predictions, got probabilities {raw.probabilities.shape} and "
                f"class ids {raw.class_ids.shape}"
            )
        classes = raw.probabilities.shape[1] if info.num_classes is None else info.num_classes
        names = self.class_names or [info.name(i) for i in range(classes)]
        if raw.probabilities.shape[1] != len(names):
            raise errors.ServerError(
                f"{self.target}: expected predictions over {len(names)} classes, got probabilities "
                f"{raw.probabilities.shape}"
            )
        if ((raw.class_ids < 0) | (raw.class_ids >= len(names))).any():
            raise errors.ServerError(f"{self.target}: class ids outside 0..{len(names) - 1}")
        return _PREDICTIONS.validate_python(
            [
                {
                    "class_id": cid,
                    "class_name": names[cid],
                    "probabilities": probs,
                    "model_version": raw.version,
                    "inverted": flipped,
                }
                for cid, probs, flipped in zip(
                    raw.class_ids.tolist(), raw.probabilities.tolist(), inverted.tolist(), strict=True
                )
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
