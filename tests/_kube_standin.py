"""A loopback stand-in for the Kubernetes API: the few paths the deployer calls, every request recorded.

The real ``kubernetes`` client talks to it through a kubeconfig, so what is asserted is what the
client really sends: method, path, query, headers and JSON body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

NAMESPACE, DEPLOYMENT, CONFIGMAP, SELECTOR = "ns", "fmtune-serving", "fmtune-deployments", "app=fmtune-serving"
TOKEN = "stand-in-token"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


def pod(name: str, ip: str | None, phase: str = "Running", deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict[str, Any] = {"phase": phase}
    if ip is not None:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "status": status}


@dataclass
class KubeStandIn:
    """The cluster's state as the API shows it; ``refuse`` answers every call with that HTTP status."""

    replicas: int = 1
    pods: list[dict[str, Any]] = field(default_factory=list)
    configmap: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    refuse: int | None = None
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self.refuse is not None:
            return self.refuse, status(self.refuse, "Forbidden", f"{method} {path} is not allowed for the stand-in")
        scale = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}/scale"
        if path == scale and method in ("GET", "PATCH"):
            if method == "PATCH":
                self.replicas = int(body["spec"]["replicas"])
            return 200, {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
                "spec": {"replicas": self.replicas},
                "status": {"replicas": self.replicas},
            }
        if path == f"/api/v1/namespaces/{NAMESPACE}/pods" and method == "GET":
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": self.pods}
        if path == f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIGMAP}" and method == "PATCH":
            self.configmap.update(body["data"])
            return 200, {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": CONFIGMAP, "namespace": NAMESPACE},
                "data": self.configmap,
            }
        if path == f"/api/v1/namespaces/{NAMESPACE}/events" and method == "POST":
            self.events.append(body)
            created = {**body, "metadata": {**body["metadata"], "name": f"{DEPLOYMENT}-{len(self.events)}"}}
            return 201, created
        return 404, status(404, "NotFound", f"the stand-in has no {method} {path}")


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def _handler(api: KubeStandIn, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw) if raw else None
            with lock:
                headers = {k.lower(): v for k, v in self.headers.items()}
                api.requests.append(Request(self.command, parts.path, parse_qs(parts.query), headers, body))
                code, payload = api.answer(self.command, parts.path, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _serve

    return Handler


def kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig whose one context points at ``server`` with a bearer token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stand-in", "cluster": {"server": server}}],
        "users": [{"name": "stand-in", "user": {"token": TOKEN}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}],
        "current-context": "stand-in",
    }
    path.write_text(json.dumps(config))
    return path


@contextmanager
def running(api: KubeStandIn) -> Iterator[KubeStandIn]:
    """Serve ``api`` on 127.0.0.1 in a thread until the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api, threading.Lock()))
    server.daemon_threads = True
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="kube-stand-in", daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def deploy_yaml(path: Path, grpc_port: int = 8500, **overrides: object) -> Path:
    """The deployer's config, naming the stand-in's objects."""
    config = {
        "namespace": NAMESPACE,
        "deployment": DEPLOYMENT,
        "record_configmap": CONFIGMAP,
        "component_selector": SELECTOR,
        "grpc_port": grpc_port,
        **overrides,
    }
    path.write_text(json.dumps(config))
    return path
