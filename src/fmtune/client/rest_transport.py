"""TF Serving's REST API over HTTP/1.1 (keep-alive), with httpx."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import numpy as np
import orjson

from fmtune import jsonio
from fmtune.client import errors
from fmtune.client.transport import CARD_SIGNATURE, RawCard, RawPrediction, Transport, card_image, scalar_bool
from fmtune.client.types import ModelMetadata, TensorSpec, VersionStatus
from fmtune.wire.contract import CLASS_NAMES, DARK_BACKGROUND, INPUT, SIGNATURE

VERSION_CACHE_SECONDS = 1.0
_ERRORS: dict[int, type[errors.FmtuneClientError]] = {
    400: errors.InvalidInputError,
    404: errors.ModelNotFoundError,
    503: errors.ServerUnavailableError,
    504: errors.RequestTimeoutError,
}


def _text(value: Any) -> str:
    """A DT_STRING element as TF Serving writes it in JSON: a string, or ``{"b64": ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("b64"), str):
        return base64.b64decode(value["b64"], validate=True).decode("utf-8")
    raise TypeError(f"a class name is {type(value).__name__}, not a string")


def _spec(info: dict[str, Any]) -> TensorSpec:
    shape = info.get("tensor_shape", {})
    dims = None if shape.get("unknown_rank") else [int(d.get("size", -1)) for d in shape.get("dim", [])]
    return TensorSpec(dtype=info.get("dtype", "DT_INVALID"), shape=dims)


class RestTransport(Transport):
    """REST predict responses carry no version, so an unpinned predict first resolves the served
    version (cached briefly) and pins the request to it: the version reported is the one used."""

    def __init__(self, target: str, model_name: str):
        super().__init__(target.rstrip("/"), model_name)
        self._http = httpx.Client(base_url=self.target)
        self._latest: tuple[int, float] | None = None

    def _url(self, version: int | None, suffix: str = "") -> str:
        base = f"/v1/models/{self.model_name}"
        return (f"{base}/versions/{version}" if version is not None else base) + suffix

    def _request(self, method: str, url: str, timeout: float, body: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = self._http.request(method, url, content=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise errors.RequestTimeoutError(f"{self.target} (REST): no answer within {timeout}s ({exc})") from None
        except httpx.TransportError as exc:
            raise errors.ServerUnavailableError(f"{self.target} (REST): {exc}") from None
        try:
            payload = jsonio.loads(response.content)
        except ValueError:
            payload = {"error": response.text[:200]}
        if response.status_code != 200:
            cls = _ERRORS.get(response.status_code, errors.ServerError)
            said = payload.get("error", payload) if isinstance(payload, dict) else payload
            raise cls(f"{self.target} (REST) HTTP {response.status_code}: {said}")
        return payload

    def _served_version(self, timeout: float) -> int:
        now = time.monotonic()
        if self._latest is not None and now - self._latest[1] < VERSION_CACHE_SECONDS:
            return self._latest[0]
        available = [s.version for s in self.status(None, timeout) if s.state == "AVAILABLE"]
        if not available:
            raise errors.ServerUnavailableError(f"{self.target}: model '{self.model_name}' has no AVAILABLE version")
        self._latest = (max(available), now)
        return self._latest[0]

    def predict(self, batch: np.ndarray, version: int | None, timeout: float) -> RawPrediction:
        # orjson writes the array's numbers straight from its buffer, far faster than a list of lists.
        body = orjson.dumps(
            {"signature_name": SIGNATURE, "inputs": {INPUT: np.ascontiguousarray(batch)}},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        pinned = version if version is not None else self._served_version(timeout)
        try:
            payload = self._request("POST", self._url(pinned, ":predict"), timeout, body)
        except errors.ModelNotFoundError:
            if version is not None:
                raise
            self._latest = None  # the served version moved on; resolve it again, once
            pinned = self._served_version(timeout)
            payload = self._request("POST", self._url(pinned, ":predict"), timeout, body)
        outputs = payload.get("outputs")
        if not isinstance(outputs, dict) or "probabilities" not in outputs or "class_id" not in outputs:
            raise errors.ServerError(f"{self.target}: unexpected predict response {str(payload)[:200]}")
        return RawPrediction(
            np.asarray(outputs["probabilities"], dtype=np.float32),
            np.asarray(outputs["class_id"], dtype=np.int64),
            pinned,
        )

    def card(self, version: int, image_shape: tuple[int, ...], timeout: float) -> RawCard:
        # The columnar format: TF Serving's row format needs every output to have a batch dimension.
        body = orjson.dumps(
            {"signature_name": CARD_SIGNATURE, "inputs": {INPUT: card_image(image_shape)}},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        payload = self._request("POST", self._url(version, ":predict"), timeout, body)
        outputs = payload.get("outputs") if isinstance(payload, dict) else None
        try:
            if not isinstance(outputs, dict) or not isinstance(outputs.get(CLASS_NAMES), list):
                raise TypeError(f"no {CLASS_NAMES} list in its outputs")
            dark = np.asarray(outputs[DARK_BACKGROUND])
            if dark.dtype != np.bool_:
                raise TypeError(f"{DARK_BACKGROUND} is {dark.dtype}, not a boolean")
            return RawCard([_text(v) for v in outputs[CLASS_NAMES]], scalar_bool(dark, DARK_BACKGROUND))
        except (KeyError, TypeError, ValueError) as exc:  # bad base64 and UTF-8 are ValueErrors
            raise errors.ServerError(
                f"{self.target}: unexpected {CARD_SIGNATURE} response {str(payload)[:200]} ({exc})"
            ) from None

    def status(self, version: int | None, timeout: float) -> list[VersionStatus]:
        payload = self._request("GET", self._url(version), timeout)
        return [
            VersionStatus(
                version=int(s["version"]),
                state=s["state"],
                error_code=s.get("status", {}).get("error_code", "OK"),
                error_message=s.get("status", {}).get("error_message", ""),
            )
            for s in payload.get("model_version_status", [])
        ]

    def metadata(self, version: int | None, timeout: float) -> ModelMetadata:
        payload = self._request("GET", self._url(version, "/metadata"), timeout)
        signatures = payload["metadata"]["signature_def"]["signature_def"]
        if SIGNATURE not in signatures:
            raise errors.ServerError(f"{self.target}: model has no '{SIGNATURE}' signature")
        sig = signatures[SIGNATURE]
        spec = payload.get("model_spec", {})
        return ModelMetadata(
            name=spec.get("name", self.model_name),
            version=int(spec.get("version", 0)),
            signature_name=SIGNATURE,
            inputs={k: _spec(v) for k, v in sig.get("inputs", {}).items()},
            outputs={k: _spec(v) for k, v in sig.get("outputs", {}).items()},
            signatures=sorted(signatures),
        )

    def close(self) -> None:
        self._http.close()
