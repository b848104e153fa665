"""TF Serving's REST API over HTTP/1.1 (keep-alive), with httpx."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import orjson

from fmtune import jsonio
from fmtune.client import errors
from fmtune.client.transport import RawPrediction, Transport
from fmtune.client.types import ModelMetadata, TensorSpec, VersionStatus
from fmtune.wire.contract import INPUT, SIGNATURE

VERSION_CACHE_SECONDS = 1.0
_ERRORS: dict[int, type[errors.FmtuneClientError]] = {
    400: errors.InvalidInputError,
    404: errors.ModelNotFoundError,
    503: errors.ServerUnavailableError,
    504: errors.RequestTimeoutError,
}


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
            raise cls(f"{self.target} (REST) HTTP {response.status_code}: {payload.get('error', payload)}")
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
