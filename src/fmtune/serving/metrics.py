"""The built-in server's Prometheus metrics, under TF Serving's own names, labels and types.

A dashboard or an alert written for TF Serving then works unchanged on either server. The names
and labels are those of tensorflow_serving/servables/tensorflow/util.cc (request count, request
and runtime latency) and tensorflow/core/kernels/batching_util/batch_resource_base.cc (batch size);
the page is laid out as tensorflow_serving/util/prometheus_exporter.cc writes it, at its
``kPrometheusPath``. TF Serving's metric ``/tensorflow/serving/request_count`` is exported as
``:tensorflow:serving:request_count``: every character other than a letter, digit or ``_``
becomes ``:``.

prometheus-client keeps the values (thread-safe, one registry per server). Its own exposition
would name a counter's samples ``<name>_total``, which TF Serving's do not carry, so the page is
written here from the collected values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram

PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# TF Serving's Buckets::Exponential(10, 1.8, 33), in microseconds (up to about 20 minutes).
LATENCY_BUCKETS = tuple(10 * 1.8**i for i in range(33))
# Buckets::Exponential(1, 1.5, 20), in rows.
BATCH_BUCKETS = tuple(1.5**i for i in range(20))
RUNTIME = "TF1"
"""The ``runtime`` label TF Serving's standard build gives a SavedModel's predictions (``TFRT`` is
its other runtime), so a query for what TF Serving reports for this model finds ours too."""
OP_NAME = "fmtune-runner"
"""The ``op_name`` label of the batch size: TF Serving names the batching op; here the runner."""


class ServingMetrics:
    """What one server counts: requests by model and status, their latency by API and entry
    point (``GRPC`` or ``REST``), the model's own time, and the rows each model call ran."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            ":tensorflow:serving:request_count",
            "The total number of requests.",
            ["model_name", "status"],
            registry=self.registry,
        )
        self._request_latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._runtime_latency = Histogram(
            ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._batch_size = Histogram(
            ":tensorflow:serving:batching:batch_size",
            "Tracks the batch size distribution on the batch result by model_name (if available).",
            ["model_name", "op_name"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

    def request(self, model: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        """One request answered with ``status`` (a gRPC code name, ``OK`` on success). As in TF
        Serving, only a successful request's latency is recorded."""
        self._requests.labels(model, status).inc()
        if status == "OK":
            self._request_latency.labels(model, api, entrypoint).observe(seconds * 1e6)

    def model_call(self, model: str, api: str, rows: int, seconds: float) -> None:
        """One call of the model: its rows (the batch size) and its time."""
        self._runtime_latency.labels(model, api, RUNTIME).observe(seconds * 1e6)
        self._batch_size.labels(model, OP_NAME).observe(rows)

    def page(self) -> bytes:
        """The metrics as TF Serving's exporter writes them."""
        return "".join(_lines(self.registry)).encode()


def _number(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items()) + "}"


def _lines(registry: CollectorRegistry) -> Iterator[str]:
    for metric in registry.collect():
        yield f"# TYPE {metric.name} {metric.type}\n"
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            name = metric.name if metric.type == "counter" else sample.name
            labels = dict(sample.labels)
            if "le" in labels:  # as absl::StrCat writes a double: six significant digits
                labels["le"] = labels["le"] if labels["le"] == "+Inf" else format(float(labels["le"]), ".6g")
            yield f"{name}{_labels(labels)} {_number(sample.value)}\n"
