"""The Helm chart, checked with real helm 3 and 4 and kubernetes-validate (no cluster needed)."""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from .tools import CHART, KUBERNETES_VERSIONS, RENDERED, VALUES, DuplicateKeyError, helm, objects, render, validator

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
        # The coordinator, the workers and TF Serving share the claim: one pod alone cannot have it.
        (["--set", "storage.accessMode=ReadWriteOncePod"], "accessMode"),
        (["--set", "coordinator.activeDeadlineSeconds=0"], "activeDeadlineSeconds"),
        (["--set", "serving.replicas=0"], "replicas"),  # no serving is serving.enabled=false
        # Short names: CRI-O refuses them, other runtimes read them as docker.io/library/...
        (["--set", "image.repository=fmtune"], "repository"),
        (["--set", "serving.image.repository=tensorflow/serving"], "repository"),
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
        assert pod_sc["fsGroupChangePolicy"] == "OnRootMismatch", name  # no re-chown of every trial file
        mounts_tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"] and sc["runAsNonRoot"] is True, name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
        for container in spec["containers"]:
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and tmp[0]["name"] in mounts_tmp, f"{name}: no writable /tmp under a read-only root"


def test_serving_runs_tf_serving_as_a_numeric_user_and_readonly_models() -> None:
    (deployment,) = by_kind(objects(render(4, "default", "--set", "serving.runAsUser=4242").stdout), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"].startswith("docker.io/tensorflow/serving:") and not container["image"].endswith(":latest")
    assert spec["securityContext"]["runAsUser"] == 4242 and spec["securityContext"]["fsGroup"] == 10001
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    data = next(m for m in container["volumeMounts"] if m["name"] == "data")
    assert data["readOnly"] is True
    assert "--model_base_path=/data/models/fmtune" in container["args"]
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values", list(VALUES))
def test_rendered_objects_have_no_duplicate_keys(values: str) -> None:
    """kubectl apply, Argo CD and kustomize refuse a mapping that repeats a key; helm keeps the last."""
    objects(render(3, values).stdout)  # StrictLoader raises DuplicateKeyError
    objects(render(4, values).stdout)
    objects(RENDERED.read_text())
    with pytest.raises(DuplicateKeyError, match="runAsUser"):
        objects("spec:\n  runAsUser: 1\n  runAsUser: 2\n")


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


def readiness_command(model_dir: Path, port: int) -> list[str]:
    """The chart's readiness probe, pointed at ``model_dir`` and a REST port on loopback."""
    (deployment,) = by_kind(objects(render().stdout), "Deployment")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    return [
        part.replace("/data/models/fmtune", str(model_dir)).replace("127.0.0.1/8501", f"127.0.0.1/{port}")
        for part in probe
    ]


def test_readiness_probe_waits_for_available_not_for_200(tmp_path: Path) -> None:
    """Run the chart's own probe command against a server answering 200 with LOADING, then AVAILABLE."""
    (tmp_path / "fmtune" / "1").mkdir(parents=True)  # a published version
    server = HTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    command = readiness_command(tmp_path / "fmtune", server.server_address[1])
    try:
        _Status.state = "LOADING"
        assert subprocess.run(command, timeout=10).returncode != 0
        _Status.state = "AVAILABLE"
        assert subprocess.run(command, timeout=10).returncode == 0
    finally:
        server.shutdown()


def test_serving_is_ready_before_the_first_version_so_helm_wait_returns(tmp_path: Path) -> None:
    """Until a version is published there is nothing to wait for: a pod that stayed unready through
    the whole search would time out `helm install --wait` (and uninstall the release with
    --rollback-on-failure), with or without the deployer. Once one is, ready means AVAILABLE."""
    model_dir = tmp_path / "fmtune"
    (model_dir / ".staging-0").mkdir(parents=True)  # the deployer's staging dir is not a version
    with socket.socket() as closed:  # TF Serving keeps its ports closed until a version loads
        closed.bind(("127.0.0.1", 0))
        command = readiness_command(model_dir, closed.getsockname()[1])
        assert subprocess.run(command, timeout=10).returncode == 0
        (model_dir / "1").mkdir()
        assert subprocess.run(command, timeout=10).returncode != 0


def job(docs: list[dict], component: str) -> dict:
    (found,) = [j for j in by_kind(docs, "Job") if j["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return found


def test_workers_are_an_indexed_job_with_stable_ids() -> None:
    workers = job(objects(render().stdout), "worker")
    spec = workers["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"] == 2
    template = spec["template"]["spec"]
    assert template["restartPolicy"] == "Never"  # a failed pod is replaced by one with the same index
    env = {e["name"]: e for e in template["containers"][0]["env"]}
    names = [e["name"] for e in template["containers"][0]["env"]]
    assert env["JOB_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert env["KERASTUNER_TUNER_ID"]["value"] == "tuner$(JOB_INDEX)"
    assert names.index("JOB_INDEX") < names.index("KERASTUNER_TUNER_ID")  # $(VAR) needs it defined first
    assert env["KERASTUNER_ORACLE_IP"]["value"] == "fmtune-oracle"


def test_gpu_values_request_one_gpu_per_worker_with_the_cuda_image() -> None:
    workers = job(objects(render(4, "gpu").stdout), "worker")
    container = workers["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].startswith("localhost/fmtune-gpu:")
    assert workers["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    default = job(objects(render().stdout), "worker")
    assert "nvidia.com/gpu" not in default["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "FMTUNE_REQUIRE_GPU" not in {e["name"] for e in default["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_gpu_values_schedule_with_nvidias_device_plugin_alone() -> None:
    """GKE's GPU pools carry no GPU Operator labels (nvidia.com/gpu.present): the nvidia.com/gpu
    request is what places a worker. The GPU image looks for the driver's libraries where GKE's
    device plugin mounts them (the pod leaves LD_LIBRARY_PATH to the image: a pod's value would
    replace the image's). Pods on GPU and CPU nodes can only share a ReadWriteMany volume."""
    docs = objects(render(4, "gpu").stdout)
    spec = job(docs, "worker")["spec"]["template"]["spec"]
    assert not [k for k in spec.get("nodeSelector", {}) if k.startswith("nvidia.com/")], spec.get("nodeSelector")
    assert "affinity" not in spec
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["FMTUNE_REQUIRE_GPU"] == "1"  # fmtune.devices.check_gpu: no GPU is an error, not a CPU run
    assert "LD_LIBRARY_PATH" not in env
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    dockerfile = (CHART.parent / "images/Dockerfile.gpu").read_text()
    assert re.search(r"LD_LIBRARY_PATH=\S*/usr/local/nvidia/lib64", dockerfile)


@pytest.mark.parametrize("values", ["gpu", "large"])
def test_values_that_spread_pods_over_nodes_use_a_shared_volume(values: str) -> None:
    (claim,) = by_kind(objects(render(4, values).stdout), "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_rbac_grants_exactly_the_calls_the_deployer_makes() -> None:
    """The Role's (group, resource, verb) triples equal those of the kubernetes client calls in
    fmtune.deploy, read from its source and resolved through the client's own request paths."""
    docs = objects(render().stdout)
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    (role,) = by_kind(docs, "Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == deployer_permissions()
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        if set(rule["verbs"]) - {"create", "list"}:  # calls on a named object: only this release's
            assert rule["resourceNames"] in (["fmtune-serving"], ["fmtune-deployments"]), rule
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


def test_the_oracle_service_selects_only_this_revisions_coordinator() -> None:
    """During an upgrade the old coordinator is still shutting down: new workers must not reach it."""
    docs = objects(render().stdout)
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "fmtune-oracle"]
    coordinator, workers = job(docs, "coordinator"), job(docs, "worker")
    revision = coordinator["metadata"]["name"].rsplit("-", 1)[1]
    assert service["spec"]["selector"]["fmtune.io/revision"] == revision
    assert service["spec"]["selector"].items() <= coordinator["spec"]["template"]["metadata"]["labels"].items()
    assert workers["spec"]["template"]["metadata"]["labels"]["fmtune.io/revision"] == revision


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


def config_map(docs: list[dict]) -> dict:
    (found,) = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == "fmtune-config"]
    return found


def serving(docs: list[dict]) -> dict:
    (found,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "fmtune-serving"]
    return found


@pytest.mark.parametrize("major", [3, 4])
@pytest.mark.parametrize("settings", [[], ["coordinator.deploy=false"], ["serving.replicas=2"]])
def test_serving_runs_the_replicas_of_the_values_in_every_scenario(major: int, settings: list[str]) -> None:
    """A first install, a reinstall on the kept volume, serving turned on later, a rollback and a
    GitOps render all run serving.replicas: nothing waits for a deployer to scale it up (a
    coordinator that finds its experiment finished deploys nothing)."""
    args = [arg for s in settings for arg in ("--set", s)]
    for values in VALUES:
        docs = objects(render(major, values, *args).stdout)
        wanted = 2 if "serving.replicas=2" in settings else (3 if values == "large" else 1)
        assert serving(docs)["spec"]["replicas"] == wanted, values
        assert "replicas" not in yaml.safe_load(config_map(docs)["data"]["deploy.yaml"])


def test_no_template_reads_the_cluster() -> None:
    """`lookup` made the render depend on the live objects: empty under `helm template`, GitOps and
    a reinstall, and a Helm 3 upgrade during a deploy rendered replicas: 0 over the deployer's."""
    templates = sorted((CHART / "templates").rglob("*.yaml")) + sorted((CHART / "templates").rglob("*.tpl"))
    assert templates
    for template in templates:
        assert not re.search(r"\blookup\b", template.read_text()), template.name


@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe"])
def test_serving_is_not_killed_while_there_is_no_model(tmp_path: Path, probe: str) -> None:
    """Run the chart's own probe: alive with no version to load; once there is one, alive only if
    the gRPC port answers."""
    (container,) = serving(objects(render().stdout))["spec"]["template"]["spec"]["containers"]
    model_dir = tmp_path / "fmtune"
    (model_dir / ".staging-0").mkdir(parents=True)  # the deployer's staging dir is not a version
    with socket.socket() as grpc:
        grpc.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = grpc.getsockname()[1]
        command = [
            part.replace("/data/models/fmtune", str(model_dir)).replace("127.0.0.1/8500", f"127.0.0.1/{port}")
            for part in container[probe]["exec"]["command"]
        ]
        assert subprocess.run(command, timeout=10).returncode == 0
        (model_dir / "1").mkdir()
        assert subprocess.run(command, timeout=10).returncode != 0
        grpc.listen()
        assert subprocess.run(command, timeout=10).returncode == 0


@pytest.mark.parametrize(
    ("settings", "deploys", "serves"),
    [([], True, True), (["serving.enabled=false"], False, False), (["coordinator.deploy=false"], False, True)],
)
def test_the_coordinator_deploys_only_when_there_is_serving(settings: list[str], deploys: bool, serves: bool) -> None:
    """With no serving Deployment the deployer's first call fails with 404, and the Job retrains,
    unpublishes and fails until its backoff limit."""
    docs = objects(render(4, "default", *[arg for s in settings for arg in ("--set", s)]).stdout)
    spec = job(docs, "coordinator")["spec"]["template"]["spec"]
    assert ("--deploy" in spec["containers"][0]["args"]) is deploys
    assert spec["automountServiceAccountToken"] is deploys
    assert bool(by_kind(docs, "Role")) is deploys and bool(by_kind(docs, "RoleBinding")) is deploys
    assert bool([d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "fmtune-serving"]) is serves


def test_worker_retries_are_counted_per_index() -> None:
    spec = job(objects(render(4, "default", "--set", "workers.backoffLimitPerIndex=5").stdout), "worker")["spec"]
    assert spec["backoffLimitPerIndex"] == 5 and "backoffLimit" not in spec
    assert spec["completionMode"] == "Indexed" and spec["template"]["spec"]["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules


def test_the_chart_needs_kubernetes_with_per_index_backoff() -> None:
    old = render(4, "default", "--kube-version", "1.28.9", check=False)
    assert old.returncode != 0 and "kube" in old.stderr.lower(), old.stderr
    assert render(4, "default", "--kube-version", "1.29.0").returncode == 0


def test_every_job_has_a_deadline() -> None:
    assert all(j["spec"]["activeDeadlineSeconds"] > 0 for j in by_kind(objects(render().stdout), "Job"))
    deadlines = ("--set", "coordinator.activeDeadlineSeconds=7200", "--set", "workers.activeDeadlineSeconds=3600")
    docs = objects(render(4, "default", *deadlines).stdout)
    assert job(docs, "coordinator")["spec"]["activeDeadlineSeconds"] == 7200
    assert job(docs, "worker")["spec"]["activeDeadlineSeconds"] == 3600


def test_worker_wait_is_handed_to_the_coordinator(tmp_path: Path) -> None:
    from fmtune import config

    def experiment(*extra: str) -> str:
        return str(config_map(objects(render(4, "default", *extra).stdout))["data"]["experiment.yaml"])

    assert "fault_tolerance" not in yaml.safe_load(experiment())  # unset: the experiment config's own default
    text = experiment(
        "--set", "coordinator.workerWaitSeconds=1234", "--set", "experiment.overrides.fault_tolerance.lease_seconds=90"
    )
    assert yaml.safe_load(text)["fault_tolerance"] == {"worker_wait_seconds": 1234, "lease_seconds": 90}
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    tolerance = config.load("quick", path, environ={}).fault_tolerance  # what the coordinator reads
    assert (tolerance.worker_wait_seconds, tolerance.lease_seconds) == (1234, 90)


@pytest.mark.parametrize("values", list(VALUES))
def test_every_pod_carries_the_image_pull_secrets(values: str) -> None:
    docs = objects(
        render(4, values, "--set", "imagePullSecrets[0].name=regcred", "--set", "tensorboard.enabled=true").stdout
    )
    specs = pod_specs(docs)
    assert {name for name, _ in specs} >= {"fmtune-serving", "fmtune-tensorboard", "fmtune-test-predict"}
    for name, spec in specs:
        assert spec.get("imagePullSecrets") == [{"name": "regcred"}], name


def test_the_gpu_image_pull_policy_is_used() -> None:
    docs = objects(render(4, "gpu", "--set", "gpuImage.pullPolicy=Always", "--set", "image.pullPolicy=Never").stdout)
    assert job(docs, "worker")["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert job(docs, "coordinator")["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"


def test_a_changed_batching_config_restarts_serving_and_nothing_else_does() -> None:
    def template(*extra: str) -> dict:
        return dict(serving(objects(render(4, "large", *extra).stdout))["spec"]["template"])

    base = template()
    assert base["metadata"]["annotations"]["checksum/batching"]
    assert template("--set", "serving.batching.maxBatchSize=128") != base
    assert template("--set", "experiment.overrides.search.max_trials=300") == base


def notes(*extra: str) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run: no cluster needed)."""
    done = subprocess.run(
        [helm(4), "install", "fmtune", str(CHART), "--dry-run=client", "--namespace", "default", *extra],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KUBECONFIG": "/nonexistent/kubeconfig"},
    )
    return done.stdout.split("NOTES:", 1)[1]


def test_the_volume_outlives_uninstall_and_the_notes_say_so() -> None:
    (claim,) = by_kind(objects(render().stdout), "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "kubectl delete pvc -n default fmtune-data" in notes()
    dropped = ("--set", "storage.keepOnUninstall=false")
    (claim,) = by_kind(objects(render(4, "default", *dropped).stdout), "PersistentVolumeClaim")
    assert "helm.sh/resource-policy" not in claim["metadata"].get("annotations", {})
    assert "`helm uninstall` deletes the volume fmtune-data" in notes(*dropped)


def volume_mounts(spec: dict) -> dict[str, dict]:
    """The pod's mounts of its persistent volume, by mount path."""
    claims = {v["name"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    return {m["mountPath"]: m for c in spec["containers"] for m in c["volumeMounts"] if m["name"] in claims}


def test_only_the_coordinator_writes_the_model_repository() -> None:
    """TF Serving runs whatever SavedModel appears under a numeric version: workers must not reach the
    repository, and serving reads it only."""
    docs = objects(render(4, "large").stdout)
    specs = dict(pod_specs(docs))
    coordinator = volume_mounts(job(docs, "coordinator")["spec"]["template"]["spec"])
    assert {path: m["subPath"] for path, m in coordinator.items()} == {
        "/data/runs": "runs",
        "/data/models": "models",
        "/data/state": "state",
        "/data/secrets": "secrets",
    }
    assert not any(m.get("readOnly") for m in coordinator.values())
    workers = volume_mounts(job(docs, "worker")["spec"]["template"]["spec"])
    assert {path: m["subPath"] for path, m in workers.items()} == {"/data/runs": "runs", "/data/state": "state"}
    assert workers["/data/state"]["readOnly"] is True  # the coordinator's own state (test_state_isolation_chart)
    for name, tree in (("fmtune-serving", "models"), ("fmtune-tensorboard", "runs")):
        mounts = volume_mounts(specs[name])
        assert {path: m["subPath"] for path, m in mounts.items()} == {f"/data/{tree}": tree}, name
        assert all(m["readOnly"] is True for m in mounts.values()), name
    experiment = yaml.safe_load(config_map(docs)["data"]["experiment.yaml"])
    assert (experiment["workdir"], experiment["model_repo"]) == ("/data/runs", "/data/models")


_HTTP_VERBS = {"GET": "get", "PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}


def deployer_permissions() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of every kubernetes client call in fmtune.deploy: the calls are
    found in its syntax tree, and each is resolved through the request path the client sends."""
    from kubernetes import client

    import fmtune.deploy

    tree = ast.parse(Path(fmtune.deploy.__file__).read_text())
    apis: dict[str, str] = {}  # self.<attribute> = client.<Api>()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            target, assigned = node.targets[0], node.value
            if isinstance(target, ast.Tuple) and isinstance(assigned, ast.Tuple):
                pairs = list(zip(target.elts, assigned.elts, strict=True))
            else:
                pairs = [(target, assigned)]
            for name, value in pairs:
                if (
                    isinstance(name, ast.Attribute)
                    and isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Attribute)
                    and value.func.attr.endswith("Api")
                ):
                    apis[name.attr] = value.func.attr
    calls = {
        (apis[node.func.value.attr], node.func.attr)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr in apis
    }
    assert len(calls) >= 4, calls
    permissions = set()
    for api, method in calls:
        source = inspect.getsource(getattr(getattr(client, api), f"_{method}_serialize"))
        found = re.search(r"method='(\w+)',\s*resource_path='([^']+)'", source)
        assert found, f"no request path in {api}.{method}"
        http, path = found.groups()
        # /api/v1/namespaces/{namespace}/pods, /apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale
        prefix, _, rest = path.partition("/namespaces/{namespace}/")
        group = "" if prefix.startswith("/api/") else prefix.split("/")[2]
        kind, *named = rest.split("/")
        resource = "/".join([kind, *named[1:]])
        permissions.add((group, resource, "list" if http == "GET" and not named else _HTTP_VERBS[http]))
    return permissions
