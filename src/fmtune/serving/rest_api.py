"""TF Serving's REST API: model status, metadata, and predict in the row and columnar formats."""

from __future__ import annotations

import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from fmtune import jsonio
from fmtune.serving import predict
from fmtune.serving.models import STATE_NAMES, ModelManager, ServingError
from fmtune.serving.runner import Runner

_TARGET = r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
GET_PATH = re.compile(_TARGET + r"(?P<metadata>/metadata)?")
POST_PATH = re.compile(_TARGET + r":(?P<verb>predict|classify|regress)")
# TF Serving's mapping of status codes to HTTP (model_servers/http_server.cc).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.PERMISSION_DENIED: 403,
}
MAX_BODY = 64 * 1024 * 1024


def _bad(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def status_json(manager: ModelManager, name: str, version: int | None) -> dict[str, Any]:
    return {
        "model_version_status": [
            {
                "version": str(s.version),
                "state": STATE_NAMES[s.state],
                "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error},
            }
            for s in manager.statuses(name, version)
        ]
    }


def metadata_json(manager: ModelManager, name: str, version: int | None, label: str | None) -> dict[str, Any]:
    servable = manager.resolve(name, version, label)
    signatures = {
        k: json_format.MessageToDict(v, preserving_proto_field_name=True) for k, v in servable.signature_defs.items()
    }
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
        "metadata": {"signature_def": {"signature_def": signatures}},
    }


def _row_inputs(instances: Any, specs: dict[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise _bad("'instances' must be a non-empty list")
    if all(isinstance(row, dict) for row in instances):
        names = set(instances[0])
        if any(set(row) != names for row in instances):
            raise _bad("every instance must name the same inputs")
        unknown = sorted(names - set(specs))
        if unknown:
            raise _bad(f"instances name inputs the signature does not have: {unknown}")
        return {n: predict.json_to_array([row[n] for row in instances], specs[n], n) for n in names}
    if len(specs) != 1:
        raise _bad("instances must be objects naming each input when the signature has several inputs")
    ((name, spec),) = specs.items()
    return {name: predict.json_to_array(instances, spec, name)}


def _columnar_inputs(inputs: Any, specs: dict[str, Any]) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(specs))
        if unknown:
            raise _bad(f"inputs the signature does not have: {unknown}")
        return {n: predict.json_to_array(v, specs[n], n) for n, v in inputs.items()}
    if len(specs) != 1:
        raise _bad("'inputs' must be an object naming each input when the signature has several inputs")
    ((name, spec),) = specs.items()
    return {name: predict.json_to_array(inputs, spec, name)}


def _parse(body: bytes) -> Any:
    try:
        return jsonio.loads(body or b"null")
    except ValueError as exc:
        raise _bad(f"JSON Parse error: {exc}") from None


def _encode(payload: Any, outputs: dict[str, np.ndarray]) -> bytes:
    """NaN and infinity written as TF Serving writes them."""
    return jsonio.dumps(payload, finite=all(np.isfinite(v).all() for v in outputs.values() if v.dtype.kind == "f"))


def predict_json(
    manager: ModelManager, runner: Runner, name: str, version: int | None, label: str | None, body: bytes
) -> bytes:
    """The response body to a predict request."""
    request = _parse(body)
    if not isinstance(request, dict):
        raise _bad("JSON Value: request body must be a JSON object")
    if ("instances" in request) == ("inputs" in request):
        raise _bad(
            "Missing 'inputs' or 'instances' key"
            if "inputs" not in request
            else "Not formatted correctly expecting only one of 'inputs' or 'instances' keys"
        )
    servable = manager.resolve(name, version, label)
    signature = request.get("signature_name") or predict.DEFAULT_SIGNATURE
    specs = servable.signature(signature).inputs
    row = "instances" in request
    inputs = _row_inputs(request["instances"], specs) if row else _columnar_inputs(request["inputs"], specs)
    outputs = runner.submit(servable, signature, inputs, ()).result()
    return _encode(_row_payload(outputs) if row else _columnar_payload(outputs), outputs)


def _row_payload(outputs: dict[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(count)]}


def _columnar_payload(outputs: dict[str, np.ndarray]) -> Any:
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}


def make_handler(manager: ModelManager, runner: Runner) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # small JSON replies must not wait on delayed ACKs
        server_version = "fmtune-serving"

        def log_message(self, format: str, *args: Any) -> None:  # requests are not logged
            pass

        def _reply(self, status: int, payload: Any) -> None:
            body = payload if isinstance(payload, bytes) else jsonio.dumps(payload, finite=True)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _dispatch(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            payload: Any
            try:
                if method == "GET" and (match := GET_PATH.fullmatch(path)):
                    name, label = match["name"], match["label"]
                    version = int(match["version"]) if match["version"] else None
                    payload = (
                        metadata_json(manager, name, version, label)
                        if match["metadata"]
                        else status_json(manager, name, version)
                    )
                elif method == "POST" and (match := POST_PATH.fullmatch(path)):
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > MAX_BODY:
                        raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body over {MAX_BODY} bytes")
                    body = self.rfile.read(length)
                    if match["verb"] != "predict":
                        raise _bad(f"Expected {match['verb']} signature method_name; this model serves predict")
                    version = int(match["version"]) if match["version"] else None
                    payload = predict_json(manager, runner, match["name"], version, match["label"], body)
                elif path.startswith("/v1/"):
                    raise _bad(f"Malformed request: {method} {path}")
                else:
                    self._reply(HTTPStatus.NOT_FOUND, {"error": f"Not found: {path}"})
                    return
            except ServingError as exc:
                self._reply(HTTP_STATUS.get(exc.code, 500), {"error": exc.message})
                return
            except Exception as exc:  # never drop the connection without an answer
                self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})
                return
            self._reply(HTTPStatus.OK, payload)

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

    return Handler


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def start(manager: ModelManager, runner: Runner, host: str, port: int) -> RestServer:
    server = RestServer((host, port), make_handler(manager, runner))
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server
