"""The dashboard's HTTP server: one page, its scripts, and the view of one experiment, read-only.

Only GET is answered (anything else is 405) and only the paths below exist (anything else is
404), so nothing outside the dashboard's own files and its experiment's view can be read. The
view is rebuilt only when state.json or results.json changes, and the page sends back the ETag it
got, so an unchanged state costs a stat and a 304.

It runs inside the coordinator, so a client must never be able to hold the coordinator's threads:
at most ``Limits.connections`` connections are served at once (more are answered 503 at once,
with no thread), each connection carries one request (HTTP/1.0), and a watchdog closes any
connection that has not sent its request within ``request_seconds`` or taken its whole answer
within ``write_seconds`` (a closed socket is the only thing that ends a blocked send).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fmtune import layout, run_state
from fmtune.dashboard import metrics, view
from fmtune.dashboard.guard import Limits, Watchdog

log = logging.getLogger("fmtune")
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
PLOTLY = "/static/plotly.min.js"
VIEW = "/api/view"
METRICS = "/metrics"  # the coordinator's Prometheus metrics (fmtune.dashboard.metrics)
LINGER_SECONDS = 3.0  # how long a coordinator that is done waits for a watching page to fetch the end
IMPORTANCE_EVERY_SECONDS = 5.0  # a forest fit per change of the completed trials, at most this often
# plotly's WebGL charts (parallel coordinates) compile their shaders with Function(): no inline
# script is allowed, but eval is.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
CONNECTION_THREAD = "dashboard-connection"  # each served connection's thread
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def plotly_js() -> bytes:
    """plotly.js as the plotly package ships it (no CDN, no network)."""
    import plotly

    return (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()


class ExperimentSource:
    """The view of one experiment dir, made again only when its files change."""

    def __init__(self, experiment_dir: Path):
        self.experiment_dir = experiment_dir
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._state: run_state.RunState | None = None
        self._body = b""
        self._shares: dict[str, float] = {}
        self._shares_for: tuple[int, bool] | None = None
        self._shares_at = 0.0
        self.fetched_at = 0.0  # monotonic time of the last request for the view
        self.fetched_key: tuple[Any, ...] | None = None  # the files' state it was sent

    def _files_key(self) -> tuple[Any, ...]:
        key: list[Any] = []
        for name in (layout.STATE, layout.RESULTS):
            try:
                st = (self.experiment_dir / name).stat()
                key += [st.st_mtime_ns, st.st_size]
            except OSError:
                key += [None, None]
        return tuple(key)

    def _refresh(self) -> tuple[Any, ...]:
        """Read the files again if they changed since the last read (under the lock); their key."""
        key = self._files_key()
        if key != self._key:
            self._state = run_state.for_experiment(self.experiment_dir)
            self._body = b""  # the view is built when first asked for
            self._key = key
        return key

    def state(self) -> run_state.RunState | None:
        """The run's record as the files are now: what every scrape of /metrics reads, parsed once
        per change of the files rather than once per scrape."""
        with self._lock:
            self._refresh()
            return self._state

    def current(self) -> tuple[str, bytes]:
        """(ETag, JSON body) of the view as the files are now."""
        with self._lock:
            key = self._refresh()
            if not self._body:
                state = self._state
                if state is None:
                    self._body = orjson.dumps({"missing": str(self.experiment_dir)})
                else:
                    self._body = orjson.dumps(view.build(state, self._importance(state)))
            self.fetched_at, self.fetched_key = time.monotonic(), key
            return f'"{hash(key) & 0xFFFFFFFFFFFF:x}"', self._body

    def served_latest(self) -> bool:
        """Whether the last view sent reflects the files as they are now."""
        with self._lock:
            return self.fetched_key == self._files_key()

    def linger(self) -> None:
        """Before the server goes: if a page is watching, give it the time to fetch the final state."""
        deadline = time.monotonic() + LINGER_SECONDS
        while time.monotonic() - self.fetched_at < 2 * LINGER_SECONDS and time.monotonic() < deadline:
            if self.served_latest():
                return
            time.sleep(0.1)

    def _importance(self, state: run_state.RunState) -> dict[str, float]:
        completed = sum(t.status == "COMPLETED" for t in state.trials)
        over = state.search_ended
        now = time.monotonic()
        due = now - self._shares_at >= IMPORTANCE_EVERY_SECONDS or over
        if (completed, over) != self._shares_for and due:
            self._shares = view.hyperparameter_shares(state)
            self._shares_for, self._shares_at = (completed, over), now
        return self._shares


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "fmtune-dashboard"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: a deadline per connection is one per request

    def setup(self) -> None:
        self.server.watchdog.arm(self.request, self.server.limits.request_seconds)
        super().setup()
        self.connection.settimeout(self.server.limits.request_seconds)  # each recv; the watchdog bounds the whole

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # closed by the watchdog, or by the client
            self.close_connection = True
        finally:
            self.server.watchdog.disarm(self.request)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if parsed:  # the request came in time; making the answer is the server's own work
            self.server.watchdog.disarm(self.request)
        return parsed

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == VIEW:
            etag, body = self.server.source.current()
            if self.headers.get("If-None-Match") == etag:
                self._send(HTTPStatus.NOT_MODIFIED, b"", None, {"ETag": etag})
            else:
                self._send(HTTPStatus.OK, body, "application/json", {"ETag": etag})
        elif path == PLOTLY:
            self._send(HTTPStatus.OK, self.server.plotly(), "text/javascript; charset=utf-8")
        elif path == METRICS:
            self._send(HTTPStatus.OK, generate_latest(self.server.metrics), CONTENT_TYPE_LATEST)
        elif path in STATIC:
            name, kind = STATIC[path]
            self._send(HTTPStatus.OK, resources.files(__package__).joinpath("static", name).read_bytes(), kind)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: GET only\n", "text/plain", {"Allow": "GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def _send(self, status: HTTPStatus, body: bytes, kind: str | None, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        if kind is not None:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        # From here on the client has write_seconds to take the answer, however big it is.
        self.server.watchdog.arm(self.request, self.server.limits.write_seconds)
        self.request.settimeout(self.server.limits.write_seconds)
        self.end_headers()
        if self.command != "HEAD" and status != HTTPStatus.NOT_MODIFIED:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # every poll would be a line
        pass


class DashboardServer(ThreadingHTTPServer):
    """A thread per connection, at most ``limits.connections`` of them, each with its deadlines."""

    daemon_threads = True
    request_queue_size = 64  # a page's burst of requests waits in the kernel, not in a thread

    def __init__(self, experiment_dir: Path, host: str, port: int, limits: Limits | None = None):
        self.source = ExperimentSource(experiment_dir)
        self.metrics = metrics.registry(self.source.state)
        self.limits = limits or Limits()
        self._plotly: bytes | None = None
        self._slots = threading.BoundedSemaphore(self.limits.connections)
        self.watchdog = Watchdog()
        super().__init__((host, port), Handler)  # closes the server (and so the watchdog) if it cannot bind

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), name=CONNECTION_THREAD, daemon=True
        )
        try:
            thread.start()
        except BaseException:
            self._slots.release()
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """503 for a connection over the limit, from the accepting thread: a send that would
        block is given up rather than waited for."""
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(BUSY)
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("dashboard: a request from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        self.watchdog.stop()

    def plotly(self) -> bytes:
        if self._plotly is None:
            self._plotly = plotly_js()
        return self._plotly

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


@contextlib.contextmanager
def serving(experiment_dir: Path, host: str, port: int, limits: Limits | None = None) -> Iterator[DashboardServer]:
    """The dashboard served from a background thread for as long as the block runs."""
    server = DashboardServer(experiment_dir, host, port, limits)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="dashboard", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def for_coordinator(experiment_dir: Path) -> Iterator[DashboardServer | None]:
    """The coordinator's dashboard where ``fmtune.dashboard.placement`` says, for the block's
    duration; None when it is turned off or cannot bind (the run goes on without it)."""
    from fmtune.dashboard.placement import resolve

    where = resolve()
    if not where.enabled:
        yield None
        return
    try:
        context = serving(experiment_dir, where.host, where.port)
        server = context.__enter__()
    except OSError as exc:
        log.warning("dashboard: cannot listen on %s:%d (%s); running without it", where.host, where.port, exc)
        yield None
        return
    log.info("dashboard: %s", server.url)
    try:
        yield server
    finally:
        server.source.linger()
        context.__exit__(None, None, None)


def find_experiment(path: Path) -> Path:
    """The experiment dir ``path`` names: itself when it holds a state or results file, else the
    one experiment under it (a work dir)."""
    names = (layout.STATE, layout.RESULTS)
    if any((path / name).is_file() for name in names):
        return path
    found = sorted({p for name in names for p in layout.experiments(path, name)})
    if len(found) == 1:
        return found[0]
    if not found:
        raise ValueError(f"no {layout.STATE} or {layout.RESULTS} in {path} or the folders in it")
    raise ValueError(f"{path} holds {len(found)} experiments; name one: " + ", ".join(str(p) for p in found))
