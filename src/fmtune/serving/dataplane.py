"""The server's one core, below both APIs (KServe's ``DataPlane`` is the model).

Which servable a request means, which of its signatures, its inputs as checked arrays, the run on
the ``Runner``, and the status and metadata answers: all here, as plain Python values and typed
``ServingError``s. ``grpc_api`` and ``rest_api`` only translate their wire messages to these calls
and the errors' kinds to their own codes, so the two APIs cannot drift apart in what they accept or
how they word a refusal.

Nothing here blocks or changes threads: ``predict`` returns the runner's future, which the gRPC
edge awaits on its event loop and the REST edge waits on in its connection thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmtune.serving.metrics import ServingMetrics
from fmtune.serving.models import STATE_NAMES, ModelManager, Servable
from fmtune.serving.runner import Runner
from fmtune.wire.contract import SIGNATURE

UNKNOWN_MODEL = "unknown"
Decoder = Callable[[Mapping[str, Any]], dict[str, np.ndarray]]
"""A request's inputs as arrays, given the signature's input specs (name -> ``tf.TensorSpec``):
the edge picks one of ``fmtune.serving.decode``'s decoders for its wire format."""


@dataclass(frozen=True, slots=True)
class Target:
    """The model a request names: TF Serving's ModelSpec without the signature."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    """A predict queued on the runner: the version and signature that run it, and its outputs to come."""

    version: int
    signature: str
    outputs: Future[dict[str, np.ndarray]]


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """One version's state, as TF Serving's ModelVersionStatus reports it; ``error`` is empty when OK."""

    version: int
    state: int  # TF Serving's ModelVersionStatus.State number (fmtune.serving.models.START ... END)
    error: str = ""

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self.state]


@dataclass(frozen=True, slots=True)
class Metadata:
    """What GetModelMetadata answers: the version resolved and its SignatureDefs (TensorFlow messages)."""

    name: str
    version: int
    signature_defs: Any  # name -> tensorflow.SignatureDef, as the SavedModel holds them


def submit(
    runner: Runner,
    servable: Servable,
    signature_name: str,
    decode: Decoder,
    output_filter: Sequence[str] = (),
    *,
    bounded: bool = True,
) -> Prediction:
    """Decode a request for ``servable``'s signature and queue it (raising ``ServingError`` at once if it is
    wrong). Also how a version's warmup requests run (``bounded`` False: see ``Runner.submit``), before
    the version can be resolved."""
    name = signature_name or SIGNATURE
    inputs = decode(servable.signature(name).inputs)
    return Prediction(servable.version, name, runner.submit(servable, name, inputs, output_filter, bounded=bounded))


class DataPlane:
    """The model manager and the runner behind one protocol-neutral interface."""

    def __init__(self, manager: ModelManager, runner: Runner, metrics: ServingMetrics | None = None):
        self.manager, self.runner = manager, runner
        self.metrics = metrics or ServingMetrics()

    def predicted(self, model: str, entrypoint: str, status: str, seconds: float) -> None:
        """Count a predict request (``entrypoint``: GRPC or REST) with its outcome and time. A name
        other than the served model's counts as ``UNKNOWN_MODEL``: labels are never the caller's
        own words, so made-up names cannot grow the metrics without bound."""
        self.metrics.request(model if model == self.name else UNKNOWN_MODEL, "Predict", entrypoint, status, seconds)

    @property
    def name(self) -> str:
        """The one model this server serves."""
        return self.manager.name

    def predict(
        self, target: Target, signature_name: str, decode: Decoder, output_filter: Sequence[str] = ()
    ) -> Prediction:
        """Resolve, decode and queue a predict; an empty ``signature_name`` means TF Serving's default."""
        servable = self.manager.resolve(target.name, target.version, target.label)
        return submit(self.runner, servable, signature_name, decode, output_filter)

    def metadata(self, target: Target) -> Metadata:
        servable = self.manager.resolve(target.name, target.version, target.label)
        return Metadata(self.manager.name, servable.version, servable.signature_defs)

    def status(self, target: Target) -> list[VersionStatus]:
        """Every version the server knows of, newest first (or only ``target.version``); the label is ignored."""
        return [VersionStatus(s.version, s.state, s.error) for s in self.manager.statuses(target.name, target.version)]
