"""A grpc.aio server on its own event-loop thread, for callers that are not asyncio code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grpc


class AioServer:
    """Starts at construction (raising if it cannot listen: a port in use is an error, not
    shared) and serves until ``stop``.

    ``maximum_concurrent_rpcs`` bounds the calls in progress (gRPC answers one more with
    RESOURCE_EXHAUSTED). The receive limit (``grpc.max_receive_message_length``, gRPC's 4 MiB unless
    ``options`` set it) holds for a compressed message after it is decompressed: grpcio refuses a
    larger one with RESOURCE_EXHAUSTED before any handler sees it (tests/unit/test_grpc_limits.py).
    """

    def __init__(
        self,
        register: Callable[[grpc.aio.Server], None],
        address: str,
        options: Sequence[tuple[str, Any]] = (),
        name: str = "grpc",
        interceptors: Sequence[Any] = (),
        maximum_concurrent_rpcs: int | None = None,
    ):
        self._maximum_concurrent_rpcs = maximum_concurrent_rpcs
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(register, address, list(options), list(interceptors)), name=name, daemon=True
        )
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def _run(
        self, register: Callable[[grpc.aio.Server], None], address: str, options: list[Any], interceptors: list[Any]
    ) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = grpc.aio.server(
            options=[*options, ("grpc.so_reuseport", 0)],
            interceptors=interceptors,
            maximum_concurrent_rpcs=self._maximum_concurrent_rpcs,
        )
        register(self._server)
        try:
            if self._server.add_insecure_port(address) == 0:
                raise OSError(f"cannot listen on {address} (gRPC)")
            self.loop.run_until_complete(self._server.start())
        except BaseException as exc:
            self._error = exc
            return
        finally:
            self._started.set()
        self.loop.run_forever()

    def stop(self, grace: float = 1.0) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(grace), self.loop).result(timeout=grace + 5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
