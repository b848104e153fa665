"""The deploy.yaml that the chart renders (for tests of the code that reads it)."""

from __future__ import annotations

import yaml

from tests.chart.tools import ROOT


def chart_deploy_yaml() -> str:
    for doc in yaml.safe_load_all((ROOT / "k8s/rendered/default.yaml").read_text()):
        if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-config"):
            return str(doc["data"]["deploy.yaml"])
    raise AssertionError("no config ConfigMap in k8s/rendered/default.yaml")
