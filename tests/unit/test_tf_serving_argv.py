"""``fmtune serve`` with tensorflow_model_server: the flags it is started with."""

from __future__ import annotations

from pathlib import Path

from fmtune.serving import metrics
from fmtune.serving.server import ServeOptions, monitoring_config, tf_serving_argv

REPO = Path(__file__).resolve().parents[2]


def test_tf_serving_serves_its_metrics_where_the_builtin_server_does(tmp_path: Path) -> None:
    """The same scrape path on either server, as the chart's ConfigMap gives it in a cluster."""
    config = monitoring_config(tmp_path)
    argv = tf_serving_argv("tensorflow_model_server", ServeOptions(model_repo=tmp_path), config)
    assert f"--monitoring_config_file={config}" in argv
    text = config.read_text()
    assert "enable: true" in text and f'path: "{metrics.PATH}"' in text
    chart = (REPO / "helm" / "templates" / "_monitoring.tpl").read_text()
    assert "prometheus_config {\n  enable: true\n  path:" in chart
