"""What can be wrong with a request, in no protocol's terms.

The model manager, the decoders and the data plane raise these; each API maps a ``Kind`` to its
own status code at its edge (``grpc_api.STATUS``, ``rest_api.HTTP_STATUS``). A leaf module, so
all of them can raise without importing each other, or gRPC.
"""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    """Why a request is refused; the comments name the TF Serving status each one stands for."""

    INVALID = "invalid"  # the request itself is wrong (INVALID_ARGUMENT)
    FAILED_PRECONDITION = "failed_precondition"  # well formed, but the model cannot take it (no such signature)
    NOT_FOUND = "not_found"  # no such model or version is served
    TOO_LARGE = "too_large"  # over a size limit (RESOURCE_EXHAUSTED)
    UNAVAILABLE = "unavailable"  # the server is full for now: try again later (UNAVAILABLE)


CODE_NAME = {
    Kind.INVALID: "INVALID_ARGUMENT",
    Kind.FAILED_PRECONDITION: "FAILED_PRECONDITION",
    Kind.NOT_FOUND: "NOT_FOUND",
    Kind.TOO_LARGE: "RESOURCE_EXHAUSTED",
    Kind.UNAVAILABLE: "UNAVAILABLE",
}
"""Each kind's canonical error code name (TensorFlow's and gRPC's alike): the ``status`` label TF
Serving counts requests by, whichever API they came through."""


class ServingError(Exception):
    """A refusal the client is told about: its ``kind`` and a message worded as TF Serving words it."""

    def __init__(self, kind: Kind, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


def invalid(message: str) -> ServingError:
    """The commonest refusal: the request is wrong."""
    return ServingError(Kind.INVALID, message)
