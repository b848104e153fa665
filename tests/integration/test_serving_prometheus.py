"""A real Prometheus scrapes a live built-in server at TF Serving's metrics path, and finds the
requests the test made, by model, status and entry point."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from fmtune.client import FmtuneClient
from fmtune.serving import metrics

from .helpers import Served, running_server, tiny_repo
from .prometheus import Prometheus, prometheus

GRPC_CALLS, REST_CALLS = 5, 3
CARDS = 1  # each client's first predict reads the model's card, itself a Predict (fmtune_card)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server of its own: other tests' requests would count too."""
    with running_server(tiny_repo(tmp_path_factory.mktemp("prom-serving"))) as server:
        yield server


@pytest.fixture(scope="module")
def scraper(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with prometheus(
        tmp_path_factory.mktemp("prometheus"), {"serving": (f"127.0.0.1:{served.rest_port}", metrics.PATH)}
    ) as found:
        yield found


def test_prometheus_finds_the_requests_served(served: Served, scraper: Prometheus):
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    with FmtuneClient(served.grpc_target) as client:
        for _ in range(GRPC_CALLS):
            assert len(client.predict(images)) == 2
    with FmtuneClient(served.rest_target) as client:
        for _ in range(REST_CALLS):
            assert len(client.predict(images)) == 2
    refused = httpx.post(f"{served.rest_target}/v1/models/fmtune:predict", json={"instances": [[1, 2, 3]]})
    assert refused.status_code == 400
    httpx.post(f"{served.rest_target}/v1/models/someone-else:predict", json={"instances": [[1]]})

    ok = 'sum(:tensorflow:serving:request_count{model_name="fmtune",status="OK"})'
    scraper.wait_for(ok, GRPC_CALLS + REST_CALLS + 2 * CARDS)
    assert scraper.value(':tensorflow:serving:request_count{model_name="fmtune",status="INVALID_ARGUMENT"}') == 1
    assert scraper.value(':tensorflow:serving:request_count{model_name="unknown",status="NOT_FOUND"}') == 1
    by_entry = {
        r["metric"]["entrypoint"]: float(r["value"][1])
        for r in scraper.query(':tensorflow:serving:request_latency_count{model_name="fmtune",API="Predict"}')
    }
    assert by_entry == {"GRPC": GRPC_CALLS + CARDS, "REST": REST_CALLS + CARDS}
    # The model ran each request's two rows (warmup's calls count too: at least ours are there).
    rows = scraper.value('sum(:tensorflow:serving:batching:batch_size_sum{model_name="fmtune"})')
    assert rows is not None and rows >= 2 * (GRPC_CALLS + REST_CALLS)
    median = scraper.value(
        'histogram_quantile(0.5, sum by (le) (:tensorflow:serving:request_latency_bucket{model_name="fmtune"}))'
    )
    assert median is not None and 10 <= median < 10e6, median  # microseconds, as TF Serving's
    (target,) = scraper.targets()
    assert target["health"] == "up", target
