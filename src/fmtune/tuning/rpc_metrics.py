"""The oracle service's latency by method, as a Prometheus histogram.

What workers wait for: a create that waits for a Bayesian suggestion shows here as CreateTrial's
tail. Timed around the servicer's own method, after the token check, so refused callers do not
count.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Histogram

RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class RpcTimer(grpc.aio.ServerInterceptor):
    """Observes each unary call's seconds under its method's name (``CreateTrial``, ...)."""

    def __init__(self, registry: CollectorRegistry):
        self.latency = Histogram(
            "fmtune_oracle_rpc_seconds",
            "Seconds the coordinator took to answer a worker's oracle call, by method.",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=registry,
        )

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner, observed = handler.unary_unary, self.latency.labels(details.method.rsplit("/", 1)[-1])

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                return await inner(request, context)
            finally:
                observed.observe(time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(
            timed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
