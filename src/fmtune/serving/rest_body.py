"""Reading a REST request's bytes: by a deadline for the whole request, and through its Content-Encoding.

What ``rest_api``'s handler needs to read a request without letting its client hold a connection
thread or memory for longer or more than the limits allow.
"""

from __future__ import annotations

import io
import socket
import time
import zlib
from http import HTTPStatus
from typing import Any

from fmtune.wire.contract import MAX_MESSAGE_BYTES


class Refusal(Exception):
    """A request refused before it reaches the data plane, answered with ``status`` and the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class DeadlineReader(io.RawIOBase):
    """A connection's bytes, each read allowed only the time left before ``deadline`` (when set), so
    the deadline bounds a whole request however slowly its bytes come; past it a read raises
    ``TimeoutError``, which ``BaseHTTPRequestHandler`` and ``Handler`` answer by closing."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request was not received in time")
            self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


def gunzip(body: bytes, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """A gzip body's bytes, decompressing no more than ``limit`` of them (``Refusal`` otherwise)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Refusal(HTTPStatus.BAD_REQUEST, f"the gzip body does not decompress: {exc}") from None
    if len(data) > limit:
        raise Refusal(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the gzip body decompresses to over the {limit} byte limit")
    if not inflater.eof or inflater.unused_data:
        raise Refusal(HTTPStatus.BAD_REQUEST, "the gzip body is truncated or has data after its end")
    return data


def decoded_body(encoding: str | None, body: bytes) -> bytes:
    """The body its Content-Encoding names: as sent, or gunzipped (as TF Serving takes any encoding naming gzip)."""
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    if not codings or codings == ["identity"]:
        return body
    if codings == ["gzip"] or codings == ["x-gzip"]:
        return gunzip(body)
    raise Refusal(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"Content-Encoding {encoding!r} is not supported; send gzip or none"
    )
