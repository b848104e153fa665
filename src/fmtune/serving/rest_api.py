"""TF Serving's REST API: model status, metadata, and predict in the row and columnar formats.

JSON in and out of the data plane (outputs written by ``rest_outputs``), whose typed errors become
HTTP statuses here (``HTTP_STATUS``) with TF Serving's ``{"error": ...}`` body. Work per connection
is bounded: a fixed pool of threads serves connections (one more is refused with 503), a connection
waits at most ``idle_seconds`` for a request to start and then ``read_seconds`` for all of it,
headers and body (a deadline for the request, not a timeout per read, so a client trickling a byte
at a time is cut off too), a POST needs a Content-Length under the limit, a gzip body (which TF
Serving accepts) may decompress to at most that limit, and a body is read in full before the
request is answered, or else the connection is closed, so no unread bytes are ever taken for the
next request.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, NamedTuple

from google.protobuf import json_format

from fmtune import jsonio
from fmtune.serving import decode, metrics, rest_outputs
from fmtune.serving.dataplane import DataPlane, Target
from fmtune.serving.errors import CODE_NAME, Kind, ServingError, invalid
from fmtune.serving.metrics import ServingMetrics
from fmtune.serving.models import ModelManager
from fmtune.serving.rest_body import DeadlineReader, Refusal, decoded_body
from fmtune.serving.runner import Runner
from fmtune.wire.contract import MAX_MESSAGE_BYTES

log = logging.getLogger("fmtune")

_TARGET = r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
GET_PATH = re.compile(_TARGET + r"(?P<metadata>/metadata)?")
POST_PATH = re.compile(_TARGET + r":(?P<verb>predict|classify|regress)")
# TF Serving's mapping of status codes to HTTP (model_servers/http_server.cc), except that a size
# limit is 413 rather than 429: the request is too large, not too frequent.
HTTP_STATUS = {
    Kind.INVALID: HTTPStatus.BAD_REQUEST,
    Kind.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    Kind.NOT_FOUND: HTTPStatus.NOT_FOUND,
    Kind.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    Kind.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
}
INTERNAL = {"error": "internal error (details in the server log)"}
IDLE_SECONDS = 15.0  # longer than clients keep idle connections (httpx: 5 s), so they close first
READ_SECONDS = 30.0  # for one request, from its first byte to its last (and for writing its answer)
WORKERS = 64


def refusal_code(status: int) -> str:
    """The code name a request refused before the data plane is counted under: the data plane's
    own for the statuses they share (404, 413, 503), INVALID_ARGUMENT for the rest (400, 411, 415)."""
    shared = (Kind.NOT_FOUND, Kind.TOO_LARGE, Kind.UNAVAILABLE)
    codes: dict[int, str] = {HTTP_STATUS[kind]: CODE_NAME[kind] for kind in shared}
    return codes.get(status, "INVALID_ARGUMENT")


def status_json(dataplane: DataPlane, target: Target) -> dict[str, Any]:
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": s.state_name,
                "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error},
            }
            for s in dataplane.status(target)
        ]
    }


def metadata_json(dataplane: DataPlane, target: Target) -> dict[str, Any]:
    metadata = dataplane.metadata(target)
    signatures = {
        k: json_format.MessageToDict(v, preserving_proto_field_name=True) for k, v in metadata.signature_defs.items()
    }
    return {
        "model_spec": {"name": metadata.name, "signature_name": "", "version": str(metadata.version)},
        "metadata": {"signature_def": {"signature_def": signatures}},
    }


def _parse(body: bytes) -> Any:
    try:
        return jsonio.loads(body or b"null")
    except ValueError as exc:
        raise invalid(f"JSON Parse error: {exc}") from None
    except RecursionError:
        raise invalid("JSON Parse error: nested too deeply") from None


def predict_json(dataplane: DataPlane, target: Target, body: bytes) -> bytes:
    """The response body to a predict request."""
    request = _parse(body)
    if not isinstance(request, dict):
        raise invalid("JSON Value: request body must be a JSON object")
    if ("instances" in request) == ("inputs" in request):
        raise invalid(
            "Missing 'inputs' or 'instances' key"
            if "inputs" not in request
            else "Not formatted correctly expecting only one of 'inputs' or 'instances' keys"
        )
    signature = request.get("signature_name") or ""  # the data plane's default
    if not isinstance(signature, str):
        raise invalid("'signature_name' must be a string")
    row = "instances" in request
    bools = b"true" in body or b"false" in body  # only then can booleans hide among the numbers
    inputs = (
        functools.partial(decode.rows, instances=request["instances"], bools=bools)
        if row
        else functools.partial(decode.columns, inputs=request["inputs"], bools=bools)
    )
    outputs = dataplane.predict(target, signature, inputs).outputs.result()
    return rest_outputs.body(outputs, row)


class Page(NamedTuple):
    """An answer that is not JSON: the metrics page."""

    body: bytes
    content_type: str


def _target(match: re.Match[str]) -> Target:
    return Target(match["name"], int(match["version"]) if match["version"] else None, match["label"])


def answer(dataplane: DataPlane, method: str, path: str, body: bytes) -> Any:
    """The payload that answers a request (raising ``ServingError`` or ``Refusal``)."""
    if method == "GET" and path == metrics.PATH:
        return Page(dataplane.metrics.page(), metrics.CONTENT_TYPE)
    if method == "GET" and (match := GET_PATH.fullmatch(path)):
        return (metadata_json if match["metadata"] else status_json)(dataplane, _target(match))
    if method == "POST" and (match := POST_PATH.fullmatch(path)):
        if match["verb"] != "predict":
            raise invalid(f"Expected {match['verb']} signature method_name; this model serves predict")
        return predict_json(dataplane, _target(match), body)
    if path.startswith("/v1/"):
        raise invalid(f"Malformed request: {method} {path}")
    raise Refusal(HTTPStatus.NOT_FOUND, f"Not found: {path}")


class Handler(BaseHTTPRequestHandler):
    """One connection's requests; the data plane and the time limits are its ``RestServer``'s."""

    server: RestServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small JSON replies must not wait on delayed ACKs
    server_version = "fmtune-serving"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.read_seconds)  # until handle_one_request sets its own
        self.rfile.close()  # the socket's own reader, in place of which:
        self.reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self.reader)

    def log_message(self, format: str, *args: Any) -> None:  # requests are not logged
        pass

    def handle_one_request(self) -> None:
        """Wait up to ``idle_seconds`` for a request to start, then ``read_seconds`` for the rest."""
        self.reader.deadline = None
        try:
            self.connection.settimeout(self.server.idle_seconds)
            started = self.rfile.peek(1)  # type: ignore[attr-defined]  # a BufferedReader
        except OSError:  # the idle timeout, or the peer went away
            started = b""
        if not started:
            self.close_connection = True
            return
        self.reader.deadline = time.monotonic() + self.server.read_seconds
        super().handle_one_request()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        """Read, decode and answer one request. A predict is counted with its status's code name,
        as TF Serving counts its REST requests, refused ones included."""
        path = self.path.split("?", 1)[0]
        started, close = time.perf_counter(), False
        try:
            try:
                body = self._read_body(self._content_length(method))
            except Refusal:
                close = True  # the body is not read: what follows on this connection is not a request
                raise
            started = time.perf_counter()  # the request in hand: what TF Serving's latency counts
            body = decoded_body(self.headers.get("Content-Encoding"), body)
            status, payload, code = self._answer(method, path, body)
        except Refusal as exc:
            status, payload, code = exc.status, {"error": exc.message}, refusal_code(exc.status)
        except OSError:  # timed out or gone mid-body: nothing sensible can follow on this connection
            self.close_connection = True
            return
        if method == "POST" and (match := POST_PATH.fullmatch(path)):
            self.server.dataplane.predicted(match["name"], "REST", code, time.perf_counter() - started)
        self._reply(status, payload, close=close)

    def _answer(self, method: str, path: str, body: bytes) -> tuple[int, Any, str]:
        """The status, payload and code name: the data plane's errors as their HTTP statuses."""
        try:
            return HTTPStatus.OK, answer(self.server.dataplane, method, path, body), "OK"
        except Refusal:  # the caller's to answer, as it answers those raised before the data plane
            raise
        except ServingError as exc:
            return HTTP_STATUS[exc.kind], {"error": exc.message}, CODE_NAME[exc.kind]
        except Exception:  # never drop the connection without an answer, nor say what broke
            log.exception("REST %s %s failed", method, path)
            return HTTPStatus.INTERNAL_SERVER_ERROR, INTERNAL, "INTERNAL"

    def _content_length(self, method: str) -> int:
        """The body length the headers announce, if it is one that can be read."""
        if "Transfer-Encoding" in self.headers:
            raise Refusal(HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding is not supported; send a Content-Length")
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not lengths:
            if method == "POST":
                raise Refusal(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
            return 0
        (text,) = lengths if len(lengths) == 1 else ("",)
        if not (text.isascii() and text.isdigit()):
            raise Refusal(HTTPStatus.BAD_REQUEST, "Content-Length must be one non-negative integer")
        length = int(text)
        if length > MAX_MESSAGE_BYTES:
            raise Refusal(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body of {length} bytes is over the {MAX_MESSAGE_BYTES} byte limit",
            )
        return length

    def _read_body(self, length: int) -> bytes:
        """All ``length`` bytes of the body, by the request's deadline (``TimeoutError`` otherwise)."""
        chunks, remaining = [], length
        while remaining:
            chunk = self.rfile.read1(min(remaining, 1 << 20))
            if not chunk:
                raise ConnectionError("the client closed the connection inside the body")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _reply(self, status: int, payload: Any, close: bool = False) -> None:
        """Answer, allowing ``read_seconds`` to write it: the request's deadline was for reading it."""
        self.reader.deadline = None
        self.connection.settimeout(self.server.read_seconds)
        kind = "application/json"
        if isinstance(payload, Page):
            payload, kind = payload.body, payload.content_type
        body = payload if isinstance(payload, bytes) else jsonio.dumps(payload, finite=True)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


_BUSY_BODY = b'{"error": "every connection slot is busy"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(_BUSY_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + _BUSY_BODY
)


class RestServer(HTTPServer):
    """Connections served by at most ``workers`` threads; one more is answered 503 and closed. Holds
    what every ``Handler`` needs: the data plane and the time limits."""

    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        dataplane: DataPlane,
        *,
        workers: int = WORKERS,
        idle_seconds: float = IDLE_SECONDS,
        read_seconds: float = READ_SECONDS,
    ):
        self.dataplane, self.idle_seconds, self.read_seconds = dataplane, idle_seconds, read_seconds
        super().__init__(address, Handler)
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"rest:{self.server_address[1]}")

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            log.debug("REST connection from %s failed", client_address, exc_info=True)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def start(
    manager: ModelManager,
    runner: Runner,
    host: str,
    port: int,
    *,
    workers: int = WORKERS,
    idle_seconds: float = IDLE_SECONDS,
    read_seconds: float = READ_SECONDS,
    metrics: ServingMetrics | None = None,
) -> RestServer:
    dataplane = DataPlane(manager, runner, metrics)
    server = RestServer((host, port), dataplane, workers=workers, idle_seconds=idle_seconds, read_seconds=read_seconds)
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server
