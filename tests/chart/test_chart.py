"""The Helm chart, checked with real helm 3 and 4 and kubernetes-validate (no cluster needed)."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from .tools import CHART, KUBERNETES_VERSIONS, RENDERED, VALUES, helm, objects, render, validator

pytestmark = pytest.mark.timeout(300)


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for doc in docs:
        if doc["kind"] in ("Job", "Deployment"):
            specs.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "Pod":
            specs.append((doc["metadata"]["name"], doc["spec"]))
    return specs


@pytest.mark.parametrize("major", [3, 4])
@pytest.mark.parametrize("values", list(VALUES))
def test_lint_strict(major: int, values: str) -> None:
    argv = [helm(major), "lint", "--strict", str(CHART)]
    for file in VALUES[values]:
        argv += ["-f", str(file)]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", list(VALUES))
def test_helm3_and_helm4_render_the_same(values: str) -> None:
    # Helm 4 puts a blank line between documents; the objects themselves must be identical.
    assert objects(render(3, values).stdout) == objects(render(4, values).stdout)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", list(VALUES))
def test_every_object_passes_strict_schema_validation(values: str, version: str) -> None:
    manifest = render(4, values).stdout
    done = subprocess.run(
        [*validator(), "--strict", "--quiet", "-k", version, "-"], input=manifest, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(objects(manifest)) >= 12


def test_rendered_manifests_are_in_sync() -> None:
    assert RENDERED.read_text() == render(4).stdout, "k8s/rendered drifted from the chart: run `make manifests`"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "workers.count=0"], "minimum"),
        (["--set", "storage.accessMode=ReadWriteSometimes"], "accessMode"),
        (["--set", "nonsense=1"], "nonsense"),
        (["--set", "experiment.preset=huge"], "preset"),
        (["--set", "serving.image.tag="], "tag"),
    ],
)
def test_schema_rejects_bad_values(args: list[str], message: str) -> None:
    done = render(4, "default", *args, check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr


@pytest.mark.parametrize("values", list(VALUES))
def test_every_container_is_locked_down_and_sized(values: str) -> None:
    docs = objects(render(4, values).stdout)
    specs = pod_specs(docs)
    assert {name.rsplit("-", 1)[0] for name, _ in specs} >= {
        "fmtune-coordinator",
        "fmtune-workers",
        "fmtune",
        "fmtune-test",
    }
    for name, spec in specs:
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and isinstance(pod_sc["runAsUser"], int), name
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
        mounts_tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True, name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and tmp[0]["name"] in mounts_tmp, f"{name}: no writable /tmp under a read-only root"


def test_serving_runs_tf_serving_as_a_numeric_user_and_readonly_models() -> None:
    (deployment,) = by_kind(objects(render().stdout), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"].startswith("tensorflow/serving:") and not container["image"].endswith(":latest")
    assert isinstance(spec["securityContext"]["runAsUser"], int)
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    data = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert data["readOnly"] is True
    assert "--model_base_path=/data/models/fmtune" in container["args"]
    assert spec["automountServiceAccountToken"] is False


class _Status(BaseHTTPRequestHandler):
    state = "LOADING"

    def do_GET(self) -> None:  # TF Serving's status: 200 even while loading
        status = {"version": "1", "state": self.state, "status": {"error_code": "OK"}}
        body = json.dumps({"model_version_status": [status]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_readiness_probe_waits_for_available_not_for_200() -> None:
    """Run the chart's own probe command against a server answering 200 with LOADING, then AVAILABLE."""
    (deployment,) = by_kind(objects(render().stdout), "Deployment")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    server = HTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    command = [part.replace("127.0.0.1/8501", f"127.0.0.1/{port}") for part in probe]
    try:
        _Status.state = "LOADING"
        assert subprocess.run(command, timeout=10).returncode != 0
        _Status.state = "AVAILABLE"
        assert subprocess.run(command, timeout=10).returncode == 0
    finally:
        server.shutdown()


def test_workers_are_an_indexed_job_with_stable_ids() -> None:
    (workers,) = [j for j in by_kind(objects(render().stdout), "Job") if "workers" in j["metadata"]["name"]]
    spec = workers["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"] == 2
    template = spec["template"]["spec"]
    assert template["restartPolicy"] == "OnFailure"  # restarted in place: same pod, same index, same id
    env = {e["name"]: e for e in template["containers"][0]["env"]}
    names = [e["name"] for e in template["containers"][0]["env"]]
    assert env["JOB_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert env["KERASTUNER_TUNER_ID"]["value"] == "tuner$(JOB_INDEX)"
    assert names.index("JOB_INDEX") < names.index("KERASTUNER_TUNER_ID")  # $(VAR) needs it defined first
    assert env["KERASTUNER_ORACLE_IP"]["value"] == "fmtune-oracle"


def test_gpu_values_request_one_gpu_per_worker_with_the_cuda_image() -> None:
    (workers,) = [j for j in by_kind(objects(render(4, "gpu").stdout), "Job") if "workers" in j["metadata"]["name"]]
    container = workers["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].startswith("fmtune-gpu:")
    assert workers["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    default = next(j for j in by_kind(objects(render().stdout), "Job") if "workers" in j["metadata"]["name"])
    assert "nvidia.com/gpu" not in default["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_rbac_grants_only_what_the_deployer_needs() -> None:
    docs = objects(render().stdout)
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    (role,) = by_kind(docs, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r for r in role["rules"]}
    assert rules[(("apps",), ("deployments",))]["verbs"] == ["get", "patch"]
    assert rules[(("apps",), ("deployments",))]["resourceNames"] == ["fmtune-serving"]
    assert rules[(("apps",), ("deployments/scale",))]["resourceNames"] == ["fmtune-serving"]
    assert rules[(("",), ("pods",))]["verbs"] == ["list"]
    assert rules[(("",), ("configmaps",))]["resourceNames"] == ["fmtune-deployments"]
    assert rules[(("",), ("events",))]["verbs"] == ["create"]
    assert len(rules) == 5
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    (binding,) = by_kind(docs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fmtune-coordinator", "namespace": "default"}]
    coordinator = next(j for j in by_kind(docs, "Job") if "coordinator" in j["metadata"]["name"])
    assert coordinator["spec"]["template"]["spec"]["serviceAccountName"] == "fmtune-coordinator"


def test_only_workers_reach_the_oracle() -> None:
    docs = objects(render().stdout)
    (policy,) = by_kind(docs, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "coordinator"
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "fmtune",
        "app.kubernetes.io/instance": "fmtune",
        "app.kubernetes.io/component": "worker",
    }
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    worker_labels = next(j for j in by_kind(docs, "Job") if "workers" in j["metadata"]["name"])["spec"]["template"][
        "metadata"
    ]["labels"]
    assert source["podSelector"]["matchLabels"].items() <= worker_labels.items()


def test_upgrades_get_new_job_names() -> None:
    first = {d["metadata"]["name"] for d in by_kind(objects(render().stdout), "Job")}
    assert first == {"fmtune-coordinator-r1", "fmtune-workers-r1"}


def test_experiment_config_in_the_configmap_is_valid(tmp_path: Path) -> None:
    from fmtune import config

    (cm,) = [
        c for c in by_kind(objects(render(4, "large").stdout), "ConfigMap") if c["metadata"]["name"].endswith("-config")
    ]
    path = tmp_path / "experiment.yaml"
    path.write_text(cm["data"]["experiment.yaml"])
    cfg = config.load("standard", path, environ={})  # what the pods run: --preset standard --config ...
    assert cfg.name == "standard-large" and cfg.model_repo.as_posix() == "/data/models"
    assert cfg.search.max_trials == 200 and cfg.download is False


def test_tensorboard_is_optional_and_reads_the_volume() -> None:
    assert not [d for d in by_kind(objects(render().stdout), "Deployment") if "tensorboard" in d["metadata"]["name"]]
    (board,) = [
        d for d in by_kind(objects(render(4, "large").stdout), "Deployment") if "tensorboard" in d["metadata"]["name"]
    ]
    container = board["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "--logdir=/data/runs"
    assert next(m for m in container["volumeMounts"] if m["name"] == "data")["readOnly"] is True
