"""The built-in server's metrics carry TF Serving's names, labels and types.

The expected table is TF Serving's own, from its source:
- tensorflow_serving/servables/tensorflow/util.cc: ``/tensorflow/serving/request_count``
  (Counter, labels model_name and status), ``/tensorflow/serving/request_latency`` (Sampler,
  model_name, API, entrypoint), ``/tensorflow/serving/runtime_latency`` (Sampler, model_name, API,
  runtime), both in microseconds with Buckets::Exponential(10, 1.8, 33);
- tensorflow/core/kernels/batching_util/batch_resource_base.cc:
  ``/tensorflow/serving/batching/batch_size`` (Sampler, model_name, op_name,
  Buckets::Exponential(1, 1.5, 20));
- tensorflow_serving/util/prometheus_exporter.cc: the name with every character outside
  ``[a-zA-Z0-9_]`` made ``:``, a Counter as ``counter`` under that very name (no ``_total``), a
  Sampler as ``histogram`` with ``_bucket``/``_sum``/``_count``, the last bucket ``+Inf``, served
  at ``/monitoring/prometheus/metrics``.
"""

from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fmtune.serving import metrics

TF_SERVING = {
    "/tensorflow/serving/request_count": ("counter", ["model_name", "status"]),
    "/tensorflow/serving/request_latency": ("histogram", ["model_name", "API", "entrypoint"]),
    "/tensorflow/serving/runtime_latency": ("histogram", ["model_name", "API", "runtime"]),
    "/tensorflow/serving/batching/batch_size": ("histogram", ["model_name", "op_name"]),
}


def prometheus_name(tf_name: str) -> str:
    """prometheus_exporter.cc's GetPrometheusMetricName."""
    return re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)


@pytest.fixture
def page() -> str:
    served = metrics.ServingMetrics()
    served.request("fmtune", "Predict", "GRPC", "OK", 0.0021)
    served.request("fmtune", "Predict", "REST", "OK", 0.0035)
    served.request("fmtune", "Predict", "REST", "INVALID_ARGUMENT", 0.0001)
    served.model_call("fmtune", "Predict", 64, 0.0012)
    return served.page().decode()


def test_the_path_is_tf_servings():
    assert metrics.PATH == "/monitoring/prometheus/metrics"


def test_every_metric_has_tf_servings_name_type_and_labels(page):
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", page, flags=re.M))
    for tf_name, (kind, labels) in TF_SERVING.items():
        name = prometheus_name(tf_name)
        assert types.get(name) == kind, name
        suffix = "_bucket" if kind == "histogram" else ""
        sample = re.search(rf"^{re.escape(name + suffix)}\{{([^}}]*)\}} ", page, flags=re.M)
        assert sample is not None, name
        found = [part.split("=", 1)[0] for part in sample.group(1).split(",")]
        assert found == labels + (["le"] if kind == "histogram" else []), name


def test_a_counter_is_written_under_its_own_name(page):
    assert ':tensorflow:serving:request_count{model_name="fmtune",status="OK"} 2\n' in page
    assert ':tensorflow:serving:request_count{model_name="fmtune",status="INVALID_ARGUMENT"} 1\n' in page
    assert "_total" not in page and "_created" not in page


def test_latency_is_in_microseconds_in_tf_servings_buckets(page):
    bounds = re.findall(
        r'^:tensorflow:serving:request_latency_bucket\{model_name="fmtune",API="Predict",entrypoint="GRPC",le="([^"]+)"\}',
        page,
        flags=re.M,
    )
    assert bounds[:4] == ["10", "18", "32.4", "58.32"] and bounds[-1] == "+Inf"
    assert len(bounds) == 34  # 33 limits and the rest
    assert ':tensorflow:serving:request_latency_sum{model_name="fmtune",API="Predict",entrypoint="GRPC"} 2100\n' in page


def test_only_a_successful_request_has_its_latency_recorded(page):
    assert ':tensorflow:serving:request_latency_count{model_name="fmtune",API="Predict",entrypoint="REST"} 1\n' in page


def test_the_page_parses_as_prometheus_text(page):
    families = {family.name: family for family in text_string_to_metric_families(page)}
    assert families[":tensorflow:serving:batching:batch_size"].type == "histogram"
    batch = families[":tensorflow:serving:batching:batch_size"]
    count = next(s for s in batch.samples if s.name.endswith("_count"))
    assert count.value == 1 and count.labels == {"model_name": "fmtune", "op_name": metrics.OP_NAME}


def test_label_values_are_escaped():
    served = metrics.ServingMetrics()
    served.request('a"b\\c\nd', "Predict", "GRPC", "OK", 0.001)
    assert ':tensorflow:serving:request_count{model_name="a\\"b\\\\c\\nd",status="OK"} 1\n' in served.page().decode()
