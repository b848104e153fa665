"""What one client may take of the dashboard's server, which runs inside the coordinator: how many
connections at once, and how long each may take to send its request and to take its answer.

``Watchdog`` enforces the time: it shuts down a connection past its deadline.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """What one client may take of the server (and so of the coordinator it runs in)."""

    model_config = ConfigDict(frozen=True)

    connections: int = Field(default=32, ge=1, description="connections served at once; more get 503")
    request_seconds: float = Field(default=10.0, gt=0, description="to send the request line and headers")
    write_seconds: float = Field(default=60.0, gt=0, description="to take the whole answer (plotly.js: 4.6 MB)")


class Watchdog:
    """Closes connections past their deadline. A socket timeout bounds each recv, not a request
    that trickles in a byte at a time; and a send to a client that never reads blocks until the
    socket is shut down, so a thread of its own does that."""

    TICK_SECONDS = 0.1

    def __init__(self) -> None:
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard-watchdog", daemon=True)
        self._thread.start()

    def arm(self, sock: socket.socket, seconds: float) -> None:
        with self._lock:
            self._deadlines[sock] = time.monotonic() + seconds

    def disarm(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.TICK_SECONDS):
            now = time.monotonic()
            # Under the lock: a handler disarms before it closes its socket, so a socket shut
            # down here is still its own (its number not yet reused by a new connection).
            with self._lock:
                overdue = [s for s, deadline in self._deadlines.items() if deadline <= now]
                for sock in overdue:
                    del self._deadlines[sock]
                    with contextlib.suppress(OSError):  # the client may have gone already
                        sock.shutdown(socket.SHUT_RDWR)
