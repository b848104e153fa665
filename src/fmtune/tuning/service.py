"""Keras Tuner's Oracle gRPC service, with the caller's id and timeouts both ways.

The wire protocol is Keras Tuner's own (its protos and method names). Workers add their tuner id
as call metadata, so the chief knows who reports what; a stock Keras Tuner worker still works,
it just is not told apart. Workers give up, with a clear error, when the chief stays unreachable
for ``coordinator_timeout_seconds`` instead of Keras Tuner's hour.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import time
from concurrent import futures
from typing import Any

import grpc
from keras_tuner.src import protos
from keras_tuner.src.distribute.oracle_client import OracleClient
from keras_tuner.src.engine import hyperparameters as hp_module
from keras_tuner.src.engine import trial as trial_module

from fmtune.aio_server import AioServer
from fmtune.tuning.oracle import FmtuneOracle
from fmtune.tuning.roles import Role

log = logging.getLogger("fmtune")
CALLER = "fmtune-tuner-id"
# Keras Tuner's Trial proto has no field for a failed trial's error, so it travels as metadata.
MESSAGE = "fmtune-message-bin"
MAX_MESSAGE_BYTES = 4000
POLL_SECONDS = 0.1
RETRY_SECONDS = 0.5
# Creates that may wait for a suggestion (Bayesian search) each wait on a thread of their own,
# started as needed; every other call is answered on the event loop.
CREATE_THREADS = 256


class CoordinatorUnreachable(RuntimeError):
    """The worker could not reach the coordinator within its timeout."""


def _metadata(context: grpc.ServicerContext, key: str) -> Any:
    return next((value for k, value in context.invocation_metadata() if k == key), None)


def _caller(context: grpc.ServicerContext) -> str | None:
    return _metadata(context, CALLER)


class Servicer(protos.get_service_grpc().OracleServicer):  # type: ignore[misc]
    """Keras Tuner's Oracle service on grpc.aio, with reports attributed to their caller and
    heartbeats on GetTrial.

    Calls run on the event loop, one at a time: each holds the oracle's lock for well under a
    millisecond, and 128 workers' calls then share one thread instead of taking one each (with a
    thread per call, handing the interpreter between them took a third of the coordinator's
    time). Waiting for the disk holds nothing; a create that may wait for a suggestion (Bayesian
    search) waits on a thread of its own, so the other calls are answered meanwhile.
    """

    def __init__(self, oracle: FmtuneOracle, creators: futures.Executor | None = None):
        self.oracle = oracle
        self.stop_triggered = False
        self._creators = creators
        self._hyperparameters: dict[str, Any] = {}  # trial id -> its values as a proto, made once
        self._spaces: dict[tuple[int, ...], tuple[list[Any], Any]] = {}  # see _trial_proto

    async def _on_disk(self) -> None:
        await asyncio.wrap_future(self.oracle.persister.written())

    async def GetSpace(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return protos.get_service().GetSpaceResponse(hyperparameters=self.oracle.get_space().to_proto())

    async def UpdateSpace(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self.oracle.update_space(hp_module.HyperParameters.from_proto(request.hyperparameters))
        return protos.get_service().UpdateSpaceResponse()

    async def CreateTrial(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if self._creators is None:
            trial = self.oracle.create_trial(request.tuner_id)
        else:
            loop = asyncio.get_running_loop()
            trial = await loop.run_in_executor(self._creators, self.oracle.create_trial, request.tuner_id)
        if trial.status == trial_module.TrialStatus.STOPPED:
            self.stop_triggered = True
        response = protos.get_service().CreateTrialResponse(trial=self._trial_proto(trial))
        if trial.trial_id:
            self._hyperparameters[trial.trial_id] = response.trial.hyperparameters
        await self._on_disk()  # who holds which trial survives a coordinator restart
        return response

    def _values_proto(self, hyperparameters: Any) -> Any:
        """``hyperparameters.to_proto()`` with the search space's part encoded once per space
        (trials share their hyperparameter objects until a worker adds one): it was most of a
        create's cost."""
        space = hyperparameters.space
        key = tuple(map(id, space))
        cached = self._spaces.get(key)
        if cached is None:
            if len(self._spaces) >= 16:
                self._spaces.clear()
            # The objects are kept with their proto, so no other object can take their ids.
            cached = self._spaces[key] = (list(space), hyperparameters.to_proto().space)
        values_only = hp_module.HyperParameters()
        values_only.values = hyperparameters.values
        proto = values_only.to_proto()
        proto.space.CopyFrom(cached[1])
        return proto

    def _trial_proto(self, trial: Any) -> Any:
        """``trial.to_proto()``, its values through ``_values_proto``."""
        bare = copy.copy(trial)
        bare.hyperparameters = hp_module.HyperParameters()
        proto = bare.to_proto()
        proto.hyperparameters.CopyFrom(self._values_proto(trial.hyperparameters))
        return proto

    async def UpdateTrial(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Answered with the trial's id, values and status (what a worker reads from it), without
        its metrics: re-encoding the whole trial on every epoch's report is most of the call's cost."""
        trial = self.oracle.update_trial_from(
            _caller(context), request.trial_id, dict(request.metrics), step=request.step
        )
        values = self._hyperparameters.get(trial.trial_id)
        if values is None:
            values = self._hyperparameters[trial.trial_id] = self._values_proto(trial.hyperparameters)
        answer = protos.get_proto().Trial(
            trial_id=trial.trial_id, hyperparameters=values, status=trial_module.TrialStatus.to_proto(trial.status)
        )
        return protos.get_service().UpdateTrialResponse(trial=answer)

    def _ended(self, proto: Any) -> Any:
        """The trial a worker ended. Its values are decoded only when they differ from those it was
        sent (a worker may add hyperparameters): Keras Tuner's decoding takes ~1 ms a trial."""
        stored = self.oracle.trials.get(proto.trial_id)
        if stored is None or proto.hyperparameters != self._hyperparameters.get(proto.trial_id):
            return trial_module.Trial.from_proto(proto)
        status = trial_module.TrialStatus.from_proto(proto.status)
        return trial_module.Trial(stored.hyperparameters, trial_id=proto.trial_id, status=status)

    async def EndTrial(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        trial = self._ended(request.trial)
        message = _metadata(context, MESSAGE)
        if message:
            trial.message = message.decode(errors="replace")
        self.oracle.end_trial_from(_caller(context), trial)
        await self._on_disk()  # a result is on disk before the worker hears it was taken
        self.oracle.log_ended(trial.trial_id)
        return protos.get_service().EndTrialResponse()

    async def GetTrial(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        caller = _caller(context)
        trial = self.oracle.heartbeat(request.trial_id, caller) if caller else self.oracle.get_trial(request.trial_id)
        return protos.get_service().GetTrialResponse(trial=trial.to_proto())

    async def GetBestTrials(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        trials = self.oracle.get_best_trials(request.num_trials)
        return protos.get_service().GetBestTrialsResponse(trials=[t.to_proto() for t in trials])


def serve_oracle(oracle: FmtuneOracle, role: Role) -> None:
    """Serve until the search is over and no worker still holds a trial, reaping silent workers."""
    creators = (
        futures.ThreadPoolExecutor(CREATE_THREADS, thread_name_prefix="oracle-create")
        if oracle.create_may_wait
        else None
    )
    servicer = Servicer(oracle, creators)
    # What is loaded by now (TensorFlow and Keras: millions of objects) is never garbage; without
    # this, every older-generation collection walked it all: a tenth of the coordinator's time
    # at 128 workers.
    gc.freeze()
    oracle.start_background()
    server = None
    try:
        register = protos.get_service_grpc().add_OracleServicer_to_server
        server = AioServer(lambda s: register(servicer, s), role.address, name="oracle-rpc")
        log.info("oracle listening on %s (%s, %s trials)", role.address, type(oracle).__name__, oracle.max_trials)
        while True:
            oracle.reap()
            over = servicer.stop_triggered or oracle.abort_reason is not None
            if over and not oracle.ongoing_trials and not oracle.tuner_ids:
                break
            time.sleep(POLL_SECONDS)
    finally:
        if server is not None:
            server.stop(grace=1)
        if creators is not None:
            creators.shutdown(wait=False, cancel_futures=True)
        oracle.stop_background()
        oracle.log_ended()


class Client(OracleClient):
    """Keras Tuner's client with the caller's id on every call and a bounded wait for the chief."""

    def __init__(self, oracle: Any, tuner_id: str, timeout: float):
        super().__init__(oracle)
        self.tuner_id, self.timeout = tuner_id, timeout
        self._metadata = ((CALLER, tuner_id),)

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
                if code not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
                    raise
                if code == grpc.StatusCode.DEADLINE_EXCEEDED or time.monotonic() >= deadline:
                    raise CoordinatorUnreachable(
                        f"the coordinator did not answer within {self.timeout:.0f}s ({code.name})"
                    ) from None
                time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.monotonic())))

    def get_space(self) -> Any:
        response = self._call(self.stub.GetSpace, protos.get_service().GetSpaceRequest())
        return hp_module.HyperParameters.from_proto(response.hyperparameters)

    def update_space(self, hyperparameters: Any) -> None:
        request = protos.get_service().UpdateSpaceRequest(hyperparameters=hyperparameters.to_proto())
        self._call(self.stub.UpdateSpace, request)

    def create_trial(self, tuner_id: str) -> Any:
        response = self._call(self.stub.CreateTrial, protos.get_service().CreateTrialRequest(tuner_id=tuner_id))
        return trial_module.Trial.from_proto(response.trial)

    def update_trial(self, trial_id: str, metrics: dict[str, float], step: int = 0) -> Any:
        request = protos.get_service().UpdateTrialRequest(trial_id=trial_id, metrics=metrics, step=step)
        return trial_module.Trial.from_proto(self._call(self.stub.UpdateTrial, request).trial)

    def end_trial(self, trial: Any) -> None:
        extra = ((MESSAGE, trial.message.encode()[-MAX_MESSAGE_BYTES:]),) if trial.message else ()
        self._call(self.stub.EndTrial, protos.get_service().EndTrialRequest(trial=trial.to_proto()), extra)

    def get_trial(self, trial_id: str) -> Any:
        response = self._call(self.stub.GetTrial, protos.get_service().GetTrialRequest(trial_id=trial_id))
        return trial_module.Trial.from_proto(response.trial)

    def get_best_trials(self, num_trials: int = 1) -> list[Any]:
        response = self._call(self.stub.GetBestTrials, protos.get_service().GetBestTrialsRequest(num_trials=num_trials))
        return [trial_module.Trial.from_proto(t) for t in response.trials]
