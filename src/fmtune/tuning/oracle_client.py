"""The worker's side of Keras Tuner's Oracle gRPC service: its client, with the caller's id and
its credential (``fmtune.tuning.auth``) on every call, and a bounded wait for the chief.

Workers give up, with a clear error, when the chief stays unreachable for
``coordinator_timeout_seconds``, instead of Keras Tuner's hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import keras_tuner as kt

from fmtune import layout
from fmtune.tuning import auth
from fmtune.tuning.headers import CALLER, MESSAGE
from fmtune.tuning.kt_internals import OracleClient, Status, Trial, service_messages

MAX_MESSAGE_BYTES = 4000
RETRY_SECONDS = 0.5


class CoordinatorUnreachable(RuntimeError):
    """The worker could not reach the coordinator within its timeout."""


class CoordinatorRefused(RuntimeError):
    """The coordinator refused this worker: a missing or wrong credential, or a call it would not take."""


class Client(OracleClient):
    """Keras Tuner's client with the caller's id on every call and a bounded wait for the chief."""

    def __init__(self, oracle: Any, tuner_id: str, timeout: float, token: Callable[[], str | None]):
        """``token``: this worker's credential (``auth.credential``), asked again when refused."""
        super().__init__(oracle)
        self.tuner_id, self.timeout, self._token = tuner_id, timeout, token
        self._metadata = ((CALLER, tuner_id), *auth.call_metadata(token()))

    def _call(self, method: Any, request: Any, extra: tuple[tuple[str, Any], ...] = ()) -> Any:
        """Wait for the chief up to the timeout, across restarts: a call cut off by a dying chief
        fails UNAVAILABLE at once and is sent again (every oracle call is safe to repeat)."""
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                return method(
                    request, wait_for_ready=True, timeout=max(remaining, 0.1), metadata=self._metadata + extra
                )
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    fresh = ((CALLER, self.tuner_id), *auth.call_metadata(self._token()))
                    if fresh != self._metadata:  # the coordinator made its secret after this worker looked
                        self._metadata = fresh
                        continue
                    raise CoordinatorRefused(
                        f"the coordinator refused this worker's credential for {self.tuner_id}: set "
                        f"{auth.CREDENTIAL_ENV} to auth.worker_credential(secret, {self.tuner_id!r}), "
                        f"or {auth.TOKEN_ENV} to the coordinator's secret, or share its work dir ({layout.TOKEN})"
                    ) from None
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise CoordinatorRefused(f"the coordinator refused a call: {exc.details()}") from None
                if code not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    raise
                if code == grpc.StatusCode.DEADLINE_EXCEEDED or time.monotonic() >= deadline:
                    raise CoordinatorUnreachable(
                        f"the coordinator did not answer within {self.timeout:.0f}s ({code.name})"
                    ) from None
                time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))

    def get_space(self) -> Any:
        response = self._call(self.stub.GetSpace, service_messages().GetSpaceRequest())
        return kt.HyperParameters.from_proto(response.hyperparameters)

    def update_space(self, hyperparameters: Any) -> None:
        request = service_messages().UpdateSpaceRequest(hyperparameters=hyperparameters.to_proto())
        self._call(self.stub.UpdateSpace, request)

    def create_trial(self, tuner_id: str) -> Any:
        response = self._call(self.stub.CreateTrial, service_messages().CreateTrialRequest(tuner_id=tuner_id))
        trial = Trial.from_proto(response.trial)
        if trial.status == Status.IDLE:  # told to ask again, which Keras Tuner does at once: not in a busy loop
            time.sleep(RETRY_SECONDS)
        return trial

    def update_trial(self, trial_id: str, metrics: dict[str, float], step: int = 0) -> Any:
        request = service_messages().UpdateTrialRequest(trial_id=trial_id, metrics=metrics, step=step)
        return Trial.from_proto(self._call(self.stub.UpdateTrial, request).trial)

    def end_trial(self, trial: Any) -> None:
        extra = ((MESSAGE, trial.message.encode()[-MAX_MESSAGE_BYTES:]),) if trial.message else ()
        self._call(self.stub.EndTrial, service_messages().EndTrialRequest(trial=trial.to_proto()), extra)

    def get_trial(self, trial_id: str) -> Any:
        response = self._call(self.stub.GetTrial, service_messages().GetTrialRequest(trial_id=trial_id))
        return Trial.from_proto(response.trial)

    def get_best_trials(self, num_trials: int = 1) -> list[Any]:
        response = self._call(self.stub.GetBestTrials, service_messages().GetBestTrialsRequest(num_trials=num_trials))
        return [Trial.from_proto(t) for t in response.trials]
