"""Deploy an exported model to the TF Serving Deployment: gate, publish, verify, record, or roll back.

The serving pods watch the model repository (a shared volume), so publishing is a rename into the
next version number. The deployer then checks every serving pod over gRPC: the new version must be
AVAILABLE and must predict what the retrained model predicts. Any failure unpublishes the version,
and TF Serving goes back to the previous one.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel, Field, ValidationError

from fmtune.export import ModelCard, commit, discard, latest_card, unpublish
from fmtune.results import now

log = logging.getLogger("fmtune")
T = TypeVar("T")
SMOKE_IMAGES = 32  # test images every serving pod must answer as the exported model does


class DeployError(RuntimeError):
    """The model could not be deployed; the previous version keeps serving."""


class GateRefused(DeployError):
    """The new model is worse than the served one by more than the tolerance."""


class ClusterError(DeployError):
    """The Kubernetes API could not be reached, or refused a call."""


class DeployConfig(BaseModel):
    """Where to deploy (the chart writes this file as deploy.yaml)."""

    namespace: str
    deployment: str
    record_configmap: str
    component_selector: str
    grpc_port: int = 8500
    gate_tolerance: float = Field(default=0.005, ge=0, le=1)
    timeout_seconds: float = Field(
        default=600, gt=0, description="for every serving pod to load a new version (chart: deployTimeoutSeconds)"
    )
    poll_seconds: float = Field(default=2, gt=0)

    @classmethod
    def load(cls, path: Path) -> DeployConfig:
        """deploy.yaml, or a DeployError naming the file and what is wrong in it."""
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise DeployError(f"deploy config {path}: {exc.strerror or exc}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise DeployError(f"deploy config {path}: not valid YAML ({exc})") from None
        except ValidationError as exc:
            problems = [f"{'.'.join(map(str, e['loc'])) or 'the top level'}: {e['msg']}" for e in exc.errors()]
            raise DeployError(f"deploy config {path}: {'; '.join(problems)}") from None


class DeploymentRecord(BaseModel):
    version: int
    previous_version: int | None
    test_accuracy: float
    val_metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    experiment: str
    deployed_at: datetime = Field(default_factory=now)
    pods: int


class Cluster(ABC):
    """What the deployer needs from Kubernetes, and nothing more (see the chart's Role). It reads
    the serving Deployment's replicas and never writes them: they are the chart's (serving.replicas),
    and a second writer would conflict with Helm 4's server-side apply."""

    @abstractmethod
    def replicas(self) -> int: ...

    @abstractmethod
    def serving_addresses(self) -> list[str]:
        """host:port of the gRPC endpoint of every running serving pod."""

    @abstractmethod
    def write_record(self, key: str, value: str) -> None: ...

    @abstractmethod
    def event(self, reason: str, message: str, warning: bool = False) -> None: ...


class ServingCheck(ABC):
    """Talks to one serving pod."""

    @abstractmethod
    def state(self, address: str, version: int) -> str:
        """TF Serving's state of that version on that pod (AVAILABLE, LOADING, ...), or "" if unknown."""

    @abstractmethod
    def predict(self, address: str, version: int, images: np.ndarray) -> np.ndarray:
        """Probabilities from that pod, pinned to that version."""


class GrpcServingCheck(ServingCheck):
    def __init__(self, model_name: str, timeout: float = 10.0):
        self.model_name, self.timeout = model_name, timeout

    def state(self, address: str, version: int) -> str:
        from fmtune.client import FmtuneClient, FmtuneClientError

        try:
            with FmtuneClient(address, model_name=self.model_name, timeout=self.timeout, retries=0) as client:
                return next((s.state for s in client.status(version) if s.version == version), "")
        except FmtuneClientError:
            return ""

    def predict(self, address: str, version: int, images: np.ndarray) -> np.ndarray:
        from fmtune.client import FmtuneClient

        with FmtuneClient(address, model_name=self.model_name, timeout=self.timeout) as client:
            # The images go as they are: they are compared with the model's own outputs for them.
            predictions = client.predict(images, version=version, invert=False)
            return np.array([p.probabilities for p in predictions])


class KubernetesCluster(Cluster):
    """In a pod: the pod's service account; elsewhere: the kubeconfig. Every failure to reach the
    API, or refusal by it, is a ``ClusterError`` naming the call."""

    def __init__(self, cfg: DeployConfig):
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config()
            except (config.ConfigException, OSError) as exc:
                raise ClusterError(
                    f"no Kubernetes configuration: not in a pod, and no usable kubeconfig ({exc})"
                ) from None
        self.cfg, self.client = cfg, client
        self.host = client.Configuration.get_default_copy().host
        self.apps, self.core = client.AppsV1Api(), client.CoreV1Api()

    def _call(self, what: str, call: Callable[[], T]) -> T:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return call()
        except ApiException as exc:
            try:
                said = json.loads(exc.body or "{}").get("message", "")
            except (ValueError, AttributeError):
                said = ""
            detail = f"{exc.status} {exc.reason}" + (f": {said}" if said else "")
            raise ClusterError(f"the Kubernetes API at {self.host} refused to {what}: {detail}") from None
        except HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ClusterError(f"cannot reach the Kubernetes API at {self.host} to {what} ({reason})") from None

    @property
    def _deployment(self) -> str:
        return f"deployment {self.cfg.namespace}/{self.cfg.deployment}"

    def replicas(self) -> int:
        scale = self._call(
            f"read the scale of {self._deployment}",
            lambda: self.apps.read_namespaced_deployment_scale(self.cfg.deployment, self.cfg.namespace),
        )
        return int(scale.spec.replicas or 0) if scale.spec else 0

    def serving_addresses(self) -> list[str]:
        pods = self._call(
            "list the serving pods",
            lambda: self.core.list_namespaced_pod(self.cfg.namespace, label_selector=self.cfg.component_selector),
        ).items
        addresses = []
        for pod in pods:
            status, meta = pod.status, pod.metadata
            if status and meta and status.phase == "Running" and status.pod_ip and meta.deletion_timestamp is None:
                addresses.append(f"{status.pod_ip}:{self.cfg.grpc_port}")
        return addresses

    def write_record(self, key: str, value: str) -> None:
        self._call(
            f"write {key} to configmap {self.cfg.namespace}/{self.cfg.record_configmap}",
            lambda: self.core.patch_namespaced_config_map(
                self.cfg.record_configmap, self.cfg.namespace, {"data": {key: value}}
            ),
        )

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        c, stamp = self.client, now()
        body = c.CoreV1Event(
            metadata=c.V1ObjectMeta(generate_name=f"{self.cfg.deployment}-"),
            involved_object=c.V1ObjectReference(
                api_version="apps/v1", kind="Deployment", name=self.cfg.deployment, namespace=self.cfg.namespace
            ),
            reason=reason,
            message=message[:1000],
            type="Warning" if warning else "Normal",
            first_timestamp=stamp,
            last_timestamp=stamp,
            count=1,
            source=c.V1EventSource(component="fmtune-deployer"),
        )
        self._call(f"record a {reason} event", lambda: self.core.create_namespaced_event(self.cfg.namespace, body))


def gate(card: ModelCard, served: ModelCard | None, tolerance: float) -> str | None:
    """Why the new model must not replace the served one, or None if it may."""
    if served is None:
        return None
    new, old = card.test_metrics.get("accuracy"), served.test_metrics.get("accuracy")
    if new is None or old is None:
        return None
    if new < old - tolerance:
        return (
            f"test accuracy {new:.4f} is worse than version {served.version}'s {old:.4f} "
            f"by more than the tolerance {tolerance}"
        )
    return None


class Deployer:
    def __init__(
        self,
        cfg: DeployConfig,
        cluster: Cluster,
        check: ServingCheck,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.cfg, self.cluster, self.check, self.sleep, self.clock = cfg, cluster, check, sleep, clock

    def deploy(
        self, staging: Path, card: ModelCard, images: np.ndarray, expected: np.ndarray, force: bool = False
    ) -> DeploymentRecord:
        """Gate, publish ``staging`` as the next version, verify every pod, and record it."""
        served = latest_card(staging.parent)
        refusal = gate(card, served, self.cfg.gate_tolerance)
        if refusal and not force:
            discard(staging)
            self._warn("DeploymentRefused", refusal)
            raise GateRefused(refusal)
        try:
            wanted = self._serving_replicas()
        except BaseException:
            discard(staging)
            raise
        version, path = commit(staging, card)
        try:
            pods = self._verify(version, wanted, images, expected)
        except Exception as exc:
            unpublish(path)
            message = f"version {version} rolled back: {exc}"
            self._warn("DeploymentFailed", message)
            raise DeployError(message) from exc
        record = DeploymentRecord(
            version=version,
            previous_version=served.version if served else None,
            test_accuracy=card.test_metrics.get("accuracy", float("nan")),
            val_metrics=card.val_metrics,
            hyperparameters=card.hyperparameters,
            experiment=card.experiment,
            pods=pods,
        )
        self.cluster.write_record(f"v{version}", record.model_dump_json())
        self.cluster.write_record("current", json.dumps({"version": version, "deployed_at": str(record.deployed_at)}))
        self.cluster.event(
            "ModelDeployed", f"version {version} AVAILABLE on {pods} pod(s), test accuracy {record.test_accuracy:.4f}"
        )
        log.info("deployed version %d to %d serving pod(s)", version, pods)
        return record

    def _warn(self, reason: str, message: str) -> None:
        """A warning event, sent if it can be: failing to send it must not hide what it reports."""
        try:
            self.cluster.event(reason, message, warning=True)
        except Exception as exc:
            log.warning("could not record the %s event: %s", reason, exc)

    def _serving_replicas(self) -> int:
        """The serving pods the chart asked for, which must all load the new version; none is an error
        (the deployer does not scale: the replicas are the chart's)."""
        wanted = self.cluster.replicas()
        if wanted == 0:
            message = (
                f"deployment {self.cfg.namespace}/{self.cfg.deployment} is scaled to 0: no pod could load and "
                "check the new version; scale it up (the chart's serving.replicas), then deploy again (fmtune deploy)"
            )
            self._warn("DeploymentRefused", message)
            raise DeployError(message)
        return wanted

    def _verify(self, version: int, wanted: int, images: np.ndarray, expected: np.ndarray) -> int:
        """Wait until ``wanted`` serving pods have ``version`` AVAILABLE, then check their answers."""
        deadline = self.clock() + self.cfg.timeout_seconds
        while True:
            addresses = self.cluster.serving_addresses()
            states = {a: self.check.state(a, version) for a in addresses}
            if len(addresses) >= wanted and all(s == "AVAILABLE" for s in states.values()):
                break
            if self.clock() > deadline:
                raise DeployError(
                    f"not AVAILABLE on every serving pod after {self.cfg.timeout_seconds:.0f}s "
                    f"(wanted {wanted} pods, saw {states or 'none'})"
                )
            self.sleep(self.cfg.poll_seconds)
        for address in addresses:
            got = self.check.predict(address, version, images)
            if (
                got.shape != expected.shape
                or not np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
                or not np.allclose(got, expected, atol=1e-4)
            ):
                raise DeployError(f"smoke test failed on {address}: its predictions differ from the retrained model's")
        return len(addresses)


def deploy_version(
    cfg: DeployConfig,
    stage: Callable[[], Path],
    card: ModelCard,
    images: np.ndarray,
    expected: np.ndarray,
    force: bool = False,
) -> DeploymentRecord:
    """The one deploy wiring (the coordinator's and ``fmtune deploy``'s): reach the cluster first,
    so that without one nothing is written; then ``stage()`` the version beside the repository's,
    and gate, publish, check that every serving pod answers ``images`` with ``expected``, record."""
    cluster = KubernetesCluster(cfg)
    return Deployer(cfg, cluster, GrpcServingCheck(card.model_name)).deploy(
        stage(), card, images, expected, force=force
    )
