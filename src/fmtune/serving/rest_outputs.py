"""A predict's outputs as the body TF Serving's REST API answers (``tensorflow_serving/util/json_tensor.cc``).

The row format (a request's ``instances``) answers ``predictions``, one item per row: every output
must then have a batch dimension of one size, or the request is refused as TF Serving refuses it
(so ``fmtune_card``, whose outputs are a ``[K]`` and a scalar, is asked for with ``inputs``). The
columnar format (``inputs``) answers ``outputs``, each tensor whole. Strings are written as JSON
text, or as ``{"b64": ...}`` when the output's name ends in ``_bytes``; NaN and infinity as TF
Serving writes them.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from fmtune import jsonio
from fmtune.serving.errors import invalid

BYTES_SUFFIX = "_bytes"  # TF Serving's convention for string outputs that hold binary data


def _text(value: Any) -> str:
    # TF Serving writes the bytes as they are; a JSON text must be valid UTF-8.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _b64(value: Any) -> dict[str, str]:
    raw = value if isinstance(value, bytes) else str(value).encode()
    return {"b64": base64.b64encode(raw).decode("ascii")}


def json_value(name: str, value: np.ndarray) -> Any:
    """One output as nested lists of JSON values (a scalar as the value itself)."""
    if value.dtype.kind not in "OSU":
        return value.tolist()
    converted = np.frompyfunc(_b64 if name.endswith(BYTES_SUFFIX) else _text, 1, 1)(value)
    return converted.tolist() if isinstance(converted, np.ndarray) else converted


def rows(outputs: dict[str, np.ndarray]) -> Any:
    """The row format's ``predictions``: refused unless every output has one batch size."""
    batch: int | None = None
    for name, value in outputs.items():
        if value.ndim == 0:
            raise invalid(f"Tensor name: {name} has no shape information")
        if batch is not None and len(value) != batch:
            raise invalid(f"Tensor name: {name} has inconsistent batch size: {len(value)} expecting: {batch}")
        batch = len(value)
    columns = {name: json_value(name, value) for name, value in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    return {"predictions": [{name: column[i] for name, column in columns.items()} for i in range(batch or 0)]}


def columns(outputs: dict[str, np.ndarray]) -> Any:
    """The columnar format's ``outputs``: one tensor as it is, several by name."""
    if len(outputs) == 1:
        ((name, value),) = outputs.items()
        return {"outputs": json_value(name, value)}
    return {"outputs": {name: json_value(name, value) for name, value in outputs.items()}}


def body(outputs: dict[str, np.ndarray], row: bool) -> bytes:
    """The response body, in the request's format."""
    payload = rows(outputs) if row else columns(outputs)
    finite = all(np.isfinite(v).all() for v in outputs.values() if v.dtype.kind == "f")
    return jsonio.dumps(payload, finite=finite)
