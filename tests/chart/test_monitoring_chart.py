"""The chart's Prometheus side (monitoring.*): TF Serving's own metrics endpoint, scrape annotations,
the optional ServiceMonitors, the NetworkPolicy rule for scrapers and the Grafana dashboard."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .test_chart import by_kind, job
from .tools import CHART, KUBERNETES_VERSIONS, helm, objects, render, validator

pytestmark = pytest.mark.timeout(300)

SERVING_PATH = "/monitoring/prometheus/metrics"
OFF = ("--set", "monitoring.enabled=false")
OPEN = ("--set", "dashboard.host=0.0.0.0")
SCRAPERS = ("--set", "monitoring.scrapeFrom[0].namespaceSelector.matchLabels.team=obs")
OPERATOR = ("--set", "monitoring.serviceMonitor.enabled=true")
GRAFANA = ("--set", "monitoring.grafanaDashboard.enabled=true")
EVERYTHING = (*OPEN, *SCRAPERS, *OPERATOR, *GRAFANA)
DASHBOARD = CHART / "dashboards" / "fmtune.json"

# Every metric the dashboard may query, with its labels. The search's come from the coordinator's
# /metrics; TF Serving's are its own (histogram latencies in microseconds).
METRICS: dict[str, set[str]] = {
    ":tensorflow:serving:request_count": {"model_name", "status"},
    ":tensorflow:serving:request_latency_bucket": {"model_name", "API", "entrypoint", "le"},
    ":tensorflow:serving:runtime_latency_bucket": {"model_name", "API", "runtime", "le"},
    ":tensorflow:serving:batching:batch_size_bucket": {"model_name", "op_name", "le"},
    "fmtune_trials_started_total": set(),
    "fmtune_trials_ended_total": {"status", "stopped_by"},
    "fmtune_trials": {"status"},
    "fmtune_trial_epoch_seconds_bucket": {"le"},
    "fmtune_workers": {"status"},
    "fmtune_trials_requeued_total": set(),
    "fmtune_oracle_rpc_seconds_bucket": {"method", "le"},
    "fmtune_phase": {"phase"},
    "fmtune_budget_seconds_left": set(),
    "fmtune_best_objective": {"objective", "direction"},
    "fmtune_state_write_failures_total": set(),
}
# Labels Prometheus adds to every scraped series (pod discovery and the operator both add these).
TARGET_LABELS = {"namespace", "pod", "job", "instance"}

# The main fields of the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1), as its CRD
# declares them: kubernetes-validate knows only Kubernetes' own kinds.
DURATION = "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
}
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"labels": {"type": "object", "additionalProperties": {"type": "string"}}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": _SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {
                                "type": "string",
                                "pattern": DURATION,
                            },
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": DURATION,
                            },
                        },
                    },
                },
            },
        },
    },
}
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR}


def docs(*settings: str) -> list[dict]:
    return objects(render(4, "default", *settings).stdout)


def named(found: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in by_kind(found, kind) if d["metadata"]["name"] == name]
    return doc


def serving_template(found: list[dict]) -> dict:
    return named(found, "Deployment", "fmtune-serving")["spec"]["template"]


def scrape_annotations(template: dict) -> dict:
    return {k: v for k, v in template["metadata"].get("annotations", {}).items() if k.startswith("prometheus.io/")}


def monitoring_config_class() -> Any:
    """TF Serving's MonitoringConfig (tensorflow_serving/config/monitoring_config.proto), built here:
    tensorflow-serving-api does not ship its Python module."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=8, label=1)  # bool
    prometheus.field.add(name="path", number=2, type=9, label=1)  # string
    config = proto.message_type.add(name="MonitoringConfig")
    config.field.add(
        name="prometheus_config", number=1, type=11, label=1, type_name=".tensorflow.serving.PrometheusConfig"
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


# --- lint, validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [(), OFF, EVERYTHING])
@pytest.mark.parametrize("major", [3, 4])
def test_lint_strict_with_monitoring_off_default_and_everything_on(major: int, settings: tuple[str, ...]) -> None:
    done = subprocess.run([helm(major), "lint", "--strict", str(CHART), *settings], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_helm3_and_helm4_render_monitoring_the_same() -> None:
    assert objects(render(3, "default", *EVERYTHING).stdout) == objects(render(4, "default", *EVERYTHING).stdout)


def test_kubernetes_validate_does_not_know_the_operator_kinds() -> None:
    """Why CRD kinds are split off below: kubernetes-validate only warns on them and passes."""
    manifest = "\n---\n".join(json.dumps(d) for d in docs(*EVERYTHING) if (d["apiVersion"], d["kind"]) in CRD_SCHEMAS)
    done = subprocess.run(
        [*validator(), "--strict", "--quiet", "-k", "1.33.0", "-"], input=manifest, capture_output=True, text=True
    )
    assert done.returncode == 0 and "Couldn't find schema for kind ServiceMonitor" in done.stdout + done.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("settings", [OFF, EVERYTHING])
def test_every_object_validates_with_monitoring_off_and_on(settings: tuple[str, ...], version: str) -> None:
    """Kubernetes' kinds through kubernetes-validate (which must know every one), the operator's
    through the main fields of their CRD."""
    found = docs(*settings)
    crds = [d for d in found if (d["apiVersion"], d["kind"]) in CRD_SCHEMAS]
    for doc in crds:
        jsonschema.validate(doc, CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])])
    assert len(crds) == (2 if settings == EVERYTHING else 0)
    rest = "\n---\n".join(json.dumps(d) for d in found if d not in crds)
    done = subprocess.run(
        [*validator(), "--strict", "--quiet", "-k", version, "-"], input=rest, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Couldn't find schema" not in done.stdout + done.stderr


def test_the_crd_schema_catches_a_misspelt_field() -> None:
    (monitor, _) = by_kind(docs(*EVERYTHING), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        jsonschema.validate(monitor, SERVICE_MONITOR)


# --- TF Serving's metrics endpoint --------------------------------------------------------------


def test_tf_serving_gets_its_monitoring_config_from_a_config_map() -> None:
    found = docs()
    template = serving_template(found)
    (container,) = template["spec"]["containers"]
    assert container["command"] == ["tensorflow_model_server"]
    (flag,) = [a for a in container["args"] if a.startswith("--monitoring_config_file=")]
    path = flag.split("=", 1)[1]
    (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
    config_map = named(found, "ConfigMap", volume["configMap"]["name"])
    text = config_map["data"][path.removeprefix(mount["mountPath"] + "/")]
    config = text_format.Parse(text, monitoring_config_class()())
    assert config.prometheus_config.enable is True and config.prometheus_config.path == SERVING_PATH


def test_monitoring_off_leaves_tf_serving_without_the_flag_the_mount_or_the_config_map() -> None:
    found = docs(*OFF)
    template = serving_template(found)
    (container,) = template["spec"]["containers"]
    assert not [a for a in container["args"] if "monitoring" in a]
    assert "monitoring" not in {m["name"] for m in container["volumeMounts"]}
    assert "monitoring" not in {v["name"] for v in template["spec"]["volumes"]}
    assert not [c for c in by_kind(found, "ConfigMap") if "monitoring" in c["metadata"]["name"]]


def test_no_serving_no_monitoring_config_map() -> None:
    found = docs("--set", "serving.enabled=false")
    assert not [c for c in by_kind(found, "ConfigMap") if "monitoring" in c["metadata"]["name"]]


def test_the_monitoring_config_sits_beside_the_batching_config() -> None:
    template = serving_template(docs("--set", "serving.batching.enabled=true"))
    (container,) = template["spec"]["containers"]
    args = container["args"]
    assert "--batching_parameters_file=/etc/fmtune/batching.txt" in args
    assert "--monitoring_config_file=/etc/fmtune-monitoring/monitoring_config.txt" in args
    assert template["metadata"]["annotations"]["checksum/batching"]
    assert scrape_annotations(template)["prometheus.io/scrape"] == "true"


# --- scrape annotations -------------------------------------------------------------------------


def test_serving_pods_carry_scrape_annotations_for_the_rest_port() -> None:
    assert scrape_annotations(serving_template(docs("--set", "serving.restPort=9501"))) == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9501",
        "prometheus.io/path": SERVING_PATH,
    }


def test_the_coordinator_is_annotated_only_where_a_scraper_can_reach_its_metrics() -> None:
    def coordinator(*settings: str) -> dict:
        return scrape_annotations(job(docs(*settings), "coordinator")["spec"]["template"])

    # Loopback (the default): nothing over the network reaches the port, so no scraper is invited.
    assert coordinator() == {}
    assert coordinator(*OPEN, "--set", "dashboard.port=9090") == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "prometheus.io/path": "/metrics",
    }
    assert coordinator(*OPEN, "--set", "dashboard.enabled=false") == {}
    assert coordinator(*OPEN, *OFF) == {}


def test_monitoring_off_annotates_nothing() -> None:
    found = docs(*OFF, *OPEN)
    assert scrape_annotations(serving_template(found)) == {}
    assert "annotations" not in serving_template(found)["metadata"]
    assert scrape_annotations(job(found, "coordinator")["spec"]["template"]) == {}


# --- ServiceMonitors ----------------------------------------------------------------------------


def monitors(*settings: str) -> dict[str, dict]:
    return {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in by_kind(docs(*settings), "ServiceMonitor")
    }


def test_no_service_monitor_by_default() -> None:
    assert monitors() == {} and monitors(*OPEN) == {}


def test_each_service_monitor_selects_its_service_and_a_port_it_has() -> None:
    found = docs(*OPEN, *OPERATOR, "--set", "monitoring.serviceMonitor.interval=15s")
    expected = {"serving": ("rest", SERVING_PATH), "coordinator": ("dashboard", "/metrics")}
    found_monitors = by_kind(found, "ServiceMonitor")
    assert len(found_monitors) == 2
    for monitor in found_monitors:
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["default"]}
        wanted = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in by_kind(found, "Service") if wanted.items() <= s["metadata"]["labels"].items()]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"]) == expected[component]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["interval"] == "15s" and "scrapeTimeout" not in endpoint


def test_service_monitors_follow_what_is_scrapable() -> None:
    assert set(monitors(*OPERATOR)) == {"serving"}  # the coordinator's metrics are on loopback
    assert set(monitors(*OPERATOR, *OPEN, "--set", "serving.enabled=false")) == {"coordinator"}
    labelled = monitors(
        *OPERATOR,
        "--set",
        "monitoring.serviceMonitor.labels.team=ml",
        "--set",
        "monitoring.serviceMonitor.scrapeTimeout=10s",
    )["serving"]
    assert labelled["metadata"]["labels"]["team"] == "ml"
    assert labelled["spec"]["endpoints"][0]["scrapeTimeout"] == "10s"


# --- NetworkPolicy ------------------------------------------------------------------------------


def ingress(*settings: str) -> list[dict]:
    (policy,) = by_kind(docs(*settings), "NetworkPolicy")
    return list(policy["spec"]["ingress"])


def test_no_scrape_from_no_extra_ingress() -> None:
    assert [p["port"] for rule in ingress(*OPEN) for p in rule["ports"]] == [8000]
    assert [p["port"] for rule in ingress() for p in rule["ports"]] == [8000]


def test_scrapers_are_admitted_only_from_where_values_say_to_the_metrics_port() -> None:
    rules = ingress(*OPEN, *SCRAPERS, "--set", "dashboard.port=9090")
    assert len(rules) == 2
    (scrape,) = [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": 9090}]]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}]


def test_the_scrape_rule_stays_apart_from_the_dashboard_rule() -> None:
    rules = ingress(*OPEN, *SCRAPERS, "--set", "dashboard.allowFrom[0].podSelector.matchLabels.role=viewer")
    sources = [r["from"] for r in rules if r["ports"][0]["port"] == 8080]
    assert sources == [
        [{"podSelector": {"matchLabels": {"role": "viewer"}}}],
        [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}],
    ]


LABEL_VALUES = st.from_regex(r"\A([A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?)?\Z") | st.sampled_from(
    ["true", "false", "yes", "on", "null", "1", "0x1F", "1e3", "01"]
)
SELECTORS = st.dictionaries(
    st.from_regex(r"\A([a-z0-9]{1,8}\.io/)?[a-z][-a-z0-9]{0,8}\Z"), LABEL_VALUES, min_size=1, max_size=3
).map(lambda labels: {"matchLabels": labels})
PEERS = st.lists(
    st.fixed_dictionaries({}, optional={"namespaceSelector": SELECTORS, "podSelector": SELECTORS}).filter(bool),
    min_size=1,
    max_size=3,
)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(peers=PEERS)
def test_the_scrape_rule_admits_exactly_the_peers_values_name(peers: list[dict], tmp_path: Path) -> None:
    """Whatever the selectors hold (label values YAML would read as booleans or numbers included),
    the rule is the peers as given, and Kubernetes' schema accepts it."""
    values = tmp_path / "peers.yaml"
    values.write_text(json.dumps({"dashboard": {"host": "0.0.0.0"}, "monitoring": {"scrapeFrom": peers}}))
    manifest = render(4, "default", "-f", str(values)).stdout
    (policy,) = by_kind(objects(manifest), "NetworkPolicy")
    (rule,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == 8080]
    assert rule["from"] == peers
    done = subprocess.run(
        [*validator(), "--strict", "--quiet", "-k", "1.33.0", "-"],
        input=json.dumps(policy),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- refused values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((*SCRAPERS,), "set dashboard.host=0.0.0.0"),
        ((*OPEN, *SCRAPERS, "--set", "dashboard.enabled=false"), "dashboard.enabled is false"),
        ((*OPEN, *SCRAPERS, *OFF), "monitoring.enabled is false"),
        ((*OPERATOR, *OFF), "monitoring.serviceMonitor.enabled needs monitoring.enabled"),
        (("--set", "monitoring.bogus=1"), "bogus"),
        (("--set", "monitoring.scrapeFrom[0].bogus=1"), "bogus"),
        (("--set", "monitoring.serviceMonitor.interval=30 seconds"), "interval"),
        (("--set", "monitoring.serviceMonitor.interval="), "interval"),
        (("--set", "monitoring.serviceMonitor.scrapeTimeout=soon"), "scrapeTimeout"),
        (("--set", "monitoring.serviceMonitor.labels.bad key=x"), "bad key"),
        (("--set-json", "monitoring.grafanaDashboard.labels=null"), "labels"),
        (("--set", "monitoring.enabled=yes"), "enabled"),
    ],
)
def test_bad_monitoring_values_are_refused_by_name(args: tuple[str, ...], message: str) -> None:
    done = render(4, "default", *args, check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr


# --- Grafana ------------------------------------------------------------------------------------


def test_the_grafana_dashboard_ships_only_when_asked() -> None:
    assert not [c for c in by_kind(docs(), "ConfigMap") if "grafana" in c["metadata"]["name"]]
    found = docs(*GRAFANA)
    config_map = named(found, "ConfigMap", "fmtune-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["fmtune.json"]) == json.loads(DASHBOARD.read_text())
    relabelled = named(
        docs(*GRAFANA, "--set", "monitoring.grafanaDashboard.labels.grafana_dashboard=fmtune"),
        "ConfigMap",
        "fmtune-grafana-dashboard",
    )
    assert relabelled["metadata"]["labels"]["grafana_dashboard"] == "fmtune"


def dashboard() -> dict:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def walk(node: Any) -> Iterator[Any]:
    """Every node of a parsed PromQL expression."""
    yield node
    for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
        child = getattr(node, attr, None)
        if child is not None:
            yield from walk(child)
    for arg in getattr(node, "args", None) or []:
        yield from walk(arg)


def queries() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def test_the_dashboard_is_grafana_dashboard_json() -> None:
    board = dashboard()
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["uid"] and board["title"] and isinstance(board["panels"], list)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat"} and panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_every_query_parses_as_promql() -> None:
    for query in queries():
        promql_parser.parse(query)  # raises ValueError naming what is wrong
    with pytest.raises(ValueError):
        promql_parser.parse("rate(fmtune_trials[5m)")


def test_the_dashboard_queries_only_known_metrics_by_their_labels() -> None:
    used: set[str] = set()
    for query in queries():
        nodes = list(walk(promql_parser.parse(query)))
        names = [n.name for n in nodes if isinstance(n, promql_parser.VectorSelector) and n.name is not None]
        assert names and set(names) <= set(METRICS), (query, set(names) - set(METRICS))
        used |= set(names)
        known = set().union(*(METRICS[n] for n in names)) | TARGET_LABELS
        grouped = {
            label
            for n in nodes
            if isinstance(n, promql_parser.AggregateExpr) and n.modifier
            for label in n.modifier.labels
        }
        matched = {
            m.name for n in nodes if isinstance(n, promql_parser.VectorSelector) for m in n.matchers.matchers
        } - {"__name__"}
        assert grouped | matched <= known, (query, (grouped | matched) - known)
    assert used == set(METRICS), f"metrics without a panel: {sorted(set(METRICS) - used)}"


def test_the_label_check_catches_an_unknown_metric() -> None:
    nodes = list(walk(promql_parser.parse("sum by (status) (rate(fmtune_trial_ended_total[5m]))")))
    names = {n.name for n in nodes if isinstance(n, promql_parser.VectorSelector)}
    assert names == {"fmtune_trial_ended_total"} and not names <= set(METRICS)


def exported() -> dict[str, set[str]]:
    """Every sample name the code exports, with its labels: the coordinator's collector over a run
    state with something in every metric, the oracle's RPC timer, and the built-in server's page
    (TF Serving's names)."""
    from datetime import datetime, timezone

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from fmtune.dashboard import metrics
    from fmtune.run_state import BudgetSpent, RunState, WorkerState
    from fmtune.serving.metrics import ServingMetrics
    from fmtune.trials import Requeue, TrialRecord
    from fmtune.tuning.rpc_metrics import RpcTimer

    at = datetime(2026, 12, 3, tzinfo=timezone.utc)
    state = RunState(
        experiment="e",
        config_digest="d",
        max_trials=4,
        objective="val_accuracy",
        best_score=0.9,
        budget=BudgetSpent(seconds=600, used_seconds=200),
        trials=[
            TrialRecord(trial_id="0", status="COMPLETED", score=0.9, started_at=at, epoch_seconds=[1.5]),
            TrialRecord(trial_id="1", status="RUNNING", started_at=at, requeues=[Requeue(worker="tuner1", at=at)]),
        ],
        workers=[WorkerState(worker="tuner0", status="running")],
        state_write_failures=1,
    )
    registry = metrics.registry(lambda: state)
    RpcTimer(registry).latency.labels("CreateTrial").observe(0.01)
    serving = ServingMetrics()
    serving.request("fmtune", "predict", "REST", "OK", 0.01)
    serving.model_call("fmtune", "predict", 4, 0.005)
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    # Read as Prometheus stores it: prometheus-client's parser would add _total to the counter,
    # which TF Serving's page (and so the built-in server's) does not write.
    for line in serving.page().decode().splitlines():
        if not line.startswith("#"):
            parsed = re.fullmatch(r"([^{ ]+)(?:\{(.*)\})? \S+", line)
            assert parsed, line
            name, labels = parsed.groups()
            found.setdefault(name, set()).update(re.findall(r'(\w+)="', labels or ""))
    return found


def test_the_metric_list_is_what_the_code_exports() -> None:
    """The dashboard's list against the coordinator's and the built-in server's own pages (the
    built-in server exports TF Serving's names and labels)."""
    found = exported()
    assert {name: found.get(name) for name in METRICS} == METRICS
