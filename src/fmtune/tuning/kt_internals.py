"""The one door to Keras Tuner's internals: its private modules, attributes and hooks.

fmtune runs Keras Tuner's own oracle and wire protocol, and needs a few things its public API does
not offer: the gRPC messages, the oracle's lock, the retry queue, the files it writes, and hooks a
subclass overrides. They are all here, turned into public names, so that upgrading keras-tuner
(pinned in pyproject.toml) means checking this one module against the new release.

``install()`` applies the coordinator's faster equivalents of a few Keras Tuner methods, process
wide; only the coordinator calls it. Why each one pays is in reports/capacity.md.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import keras_tuner as kt
import numpy as np
from keras_tuner.src import protos
from keras_tuner.src.distribute.oracle_client import OracleClient
from keras_tuner.src.engine import conditions, metrics_tracking
from keras_tuner.src.engine import trial as trial_module
from keras_tuner.src.engine.oracle import LOCKS, THREADS

__all__ = [
    "FINISHED",
    "MetricHistory",
    "MetricsTracker",
    "OracleClient",
    "OracleHooks",
    "Status",
    "Trial",
    "TunerHooks",
    "install",
    "locked",
    "proto_messages",
    "quiet_conditions",
    "remote_oracle",
    "service_grpc",
    "service_messages",
]

Trial = trial_module.Trial
Status = trial_module.TrialStatus
MetricsTracker = metrics_tracking.MetricsTracker
MetricHistory = metrics_tracking.MetricHistory
FINISHED = (Status.COMPLETED, Status.FAILED, Status.STOPPED)
F = TypeVar("F", bound=Callable[..., Any])
# Type checkers see the mixin as an Oracle; at run time it is mixed into the chosen oracle class.
_OracleBase: type = kt.Oracle if TYPE_CHECKING else object


def proto_messages() -> Any:
    """Keras Tuner's protobuf module (Trial, HyperParameters, Condition...)."""
    return protos.get_proto()


def service_messages() -> Any:
    """The Oracle service's request and response messages."""
    return protos.get_service()


def service_grpc() -> Any:
    """The Oracle service's gRPC stubs and servicer base."""
    return protos.get_service_grpc()


def locked(func: F) -> F:
    """Keras Tuner's ``synchronized``, but released when the call raises (Keras Tuner's keeps the
    lock then, which deadlocks a server that answers calls on more than one thread). Keras Tuner's
    own synchronized methods called inside see the lock as theirs and leave it alone."""

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = threading.current_thread().name
        if THREADS[self] == name:
            return func(self, *args, **kwargs)
        with LOCKS[self]:
            THREADS[self] = name
            try:
                return func(self, *args, **kwargs)
            finally:
                THREADS[self] = None

    return wrapper  # type: ignore[return-value]


class _QuickCopy(kt.HyperParameters):
    """Keras Tuner copies the whole search space for every trial through its config; the
    hyperparameter objects are never changed after they are declared, so sharing them is safe."""

    def copy(self) -> kt.HyperParameters:
        new = copy.copy(self)
        new.__class__ = kt.HyperParameters
        new._hps = type(self._hps)(list, {name: list(hps) for name, hps in self._hps.items()})
        new._space, new.values = list(self._space), dict(self.values)
        new._conditions, new._name_scopes = list(self._conditions), list(self._name_scopes)
        new.active_scopes, new.inactive_scopes = list(self.active_scopes), list(self.inactive_scopes)
        return new


class OracleHooks(_OracleBase):
    """Mixin for a Keras Tuner oracle: its private hooks and state under public names.

    Overridable: ``save_trial`` (Keras Tuner writes a trial's file there) and ``check_failures``
    (called after every trial's end). Read or set:
    ``retry_queue``, ``state_file``, ``trial_dir``. Faster, same results: random values, paths.
    """

    def set_project_dir(self, directory: Path | str, project_name: str) -> None:
        """Where the oracle keeps its files (the tuner sets this; tests and benchmarks call it)."""
        self._set_project_dir(str(directory), project_name)

    def use_quick_copies(self) -> None:
        """Per-trial copies of the search space that share its hyperparameter objects."""
        self.hyperparameters.__class__ = _QuickCopy

    @property
    def retry_queue(self) -> list[str]:
        """Trials waiting to be handed out again (failed, or taken back from a silent worker)."""
        return self._retry_queue

    @retry_queue.setter
    def retry_queue(self, queue: list[str]) -> None:
        self._retry_queue = queue

    @property
    def state_dir(self) -> Path:
        return Path(str(self._directory), self._project_name)

    @property
    def state_file(self) -> Path:
        return self.state_dir / "oracle.json"

    def trial_dir(self, trial_id: str) -> Path:
        """A trial's directory, made here (Keras Tuner checks for it through TensorFlow's file API
        on every call)."""
        path = self.state_dir / f"trial_{trial_id}"
        os.makedirs(path, exist_ok=True)
        return path

    def save_trial(self, trial: Any) -> None:
        super()._save_trial(trial)

    def check_failures(self) -> None:
        """Called after every trial's end (Keras Tuner raises there after too many failures)."""
        super()._check_consecutive_failures()

    def values_hash(self, values: dict[str, Any]) -> str:
        """Keras Tuner's hash of a trial's values, as oracle.json's ``id_to_hash`` records it."""
        return str(self._compute_values_hash(values))

    # The calls the servicer makes that Keras Tuner leaves unlocked.

    @locked
    def get_space(self) -> Any:
        return super().get_space()

    @locked
    def update_space(self, hyperparameters: Any) -> None:
        super().update_space(hyperparameters)

    @locked
    def get_trial(self, trial_id: str) -> Any:
        return super().get_trial(trial_id)

    @locked
    def get_best_trials(self, num_trials: int = 1) -> Any:
        """Keras Tuner's ranking, without the trials it pads it with when too few completed: one
        with no score (it failed) is nobody's best, and retraining it would fail again."""
        return [t for t in super().get_best_trials(num_trials) if t.score is not None]

    # Keras Tuner's private hooks, routed to the public names above.

    def _get_oracle_fname(self) -> str:
        return str(self.state_file)

    def _get_trial_dir(self, trial_id: str) -> str:
        return str(self.trial_dir(trial_id))

    def _save_trial(self, trial: Any) -> None:
        self.save_trial(trial)

    def _check_consecutive_failures(self) -> None:
        self.check_failures()

    def _random_values(self) -> dict[str, Any] | None:
        """Keras Tuner's, with the same values from the same seed, minus its rebuilding of the
        space for every trial: a value is drawn when its conditions hold."""
        for _ in range(self._max_collisions + 1):
            values: dict[str, Any] = {}
            for hp in self.hyperparameters.space:
                if all(condition.is_active(values) for condition in hp.conditions):
                    values[hp.name] = hp.random_sample(self._seed_state)
                    self._seed_state += 1
            if not self._duplicate(values):
                return values
        return None

    # Bayesian optimisation's encoding of the space.

    def nonfixed_space(self) -> list[Any]:
        return self._nonfixed_space()

    def vector_to_values(self, point: np.ndarray) -> dict[str, Any]:
        return self._vector_to_values(point)

    def random_populate_space(self) -> dict[str, Any]:
        return self._random_populate_space()


class TunerHooks(kt.Tuner):
    """Keras Tuner's private tuner hooks under public names that a subclass overrides."""

    def build_model(self, hp: Any) -> Any:
        """Build the trial's model (Keras Tuner's ``_build_hypermodel``)."""
        return super()._build_hypermodel(hp)

    def run_and_report(self, trial: Any, *fit_args: Any, **fit_kwargs: Any) -> None:
        """Run a trial and report its results (Keras Tuner's ``_run_and_update_trial``)."""
        super()._run_and_update_trial(trial, *fit_args, **fit_kwargs)

    def _build_hypermodel(self, hp: Any) -> Any:
        return self.build_model(hp)

    def _run_and_update_trial(self, trial: Any, *fit_args: Any, **fit_kwargs: Any) -> None:
        self.run_and_report(trial, *fit_args, **fit_kwargs)


def remote_oracle(tuner: kt.Tuner) -> Any | None:
    """On a worker, Keras Tuner replaces the tuner's oracle with a gRPC client of the chief's;
    this is the oracle object that client wraps (None on the chief)."""
    oracle: Any = getattr(tuner, "oracle")  # noqa: B009 - typed as Any: Keras Tuner swaps it on workers
    return oracle._oracle if isinstance(oracle, OracleClient) else None


# -- process-wide replacements ------------------------------------------------------------------


def _parent_to_proto(self: conditions.Parent) -> Any:
    """keras-tuner 1.4.8's ``Parent.to_proto`` prints a debug line on every call; same code, silent."""
    first = self.values[0]
    kind = (
        "string_value"
        if isinstance(first, str)
        else "boolean_value"
        if isinstance(first, bool)
        else "int_value"
        if isinstance(first, int)
        else "float_value"
    )
    proto = protos.get_proto()
    values = [proto.Value(**{kind: v}) for v in self.values]
    return proto.Condition(parent=proto.Condition.Parent(name=self.name, values=values))


def _observation_mean(self: metrics_tracking.MetricObservation) -> float:
    """Keras Tuner's ``np.mean`` of an epoch's values; with one execution that is its one value."""
    return self.value[0] if len(self.value) == 1 else float(np.mean(self.value))


def _best_value(self: metrics_tracking.MetricHistory) -> float | None:
    """Keras Tuner's ``np.nanmin``/``np.nanmax`` over the epochs' means, in plain Python."""
    values = [obs.mean() for obs in self._observations.values()]
    if not values:
        return None
    numbers = [v for v in values if v == v]  # NaN is the one value not equal to itself
    if not numbers:
        return float("nan")
    return min(numbers) if self.direction == "min" else max(numbers)


def quiet_conditions() -> None:
    """Silence the debug line Keras Tuner prints whenever it encodes a conditional hyperparameter
    (every trial of a space with conditions, on the chief and on every worker)."""
    conditions.Parent.to_proto = _parent_to_proto


def install() -> None:
    """The coordinator's replacements: the same results as Keras Tuner's methods, without numpy on
    one-element lists on every report. Idempotent."""
    quiet_conditions()
    metrics_tracking.MetricObservation.mean = _observation_mean
    metrics_tracking.MetricHistory.get_best_value = _best_value
