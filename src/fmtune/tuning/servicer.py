"""The chief's side of Keras Tuner's Oracle service: one servicer method per oracle call.

The wire protocol is Keras Tuner's own (its protos and method names). Workers add their tuner id
and their credential (``fmtune.tuning.auth``, which proves the id) as call metadata
(``fmtune.tuning.oracle_client``). A call that changes the search must name its caller, and acts
only on the caller's own trial; every call is checked (``fmtune.tuning.checks``) before it changes
anything, and every value a trial ends with is checked against the space as the coordinator
declared it. Refusals are counted per worker (``FmtuneOracle.refusals``).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any, TypeVar

import grpc
import keras_tuner as kt
from prometheus_client import CollectorRegistry

from fmtune.aio_server import AioServer
from fmtune.tuning import auth, checks
from fmtune.tuning.headers import CALLER, MESSAGE
from fmtune.tuning.kt_internals import Status, Trial, proto_messages, service_grpc, service_messages
from fmtune.tuning.oracle import FmtuneOracle
from fmtune.tuning.persist import NotWritten
from fmtune.tuning.rpc_metrics import RpcTimer

log = logging.getLogger("fmtune")
# Creates that may wait for a suggestion (Bayesian search) each wait on a thread of their own,
# started as needed; every other call is answered on the event loop.
CREATE_THREADS = 256


ENDED = {Status.COMPLETED, Status.INVALID, Status.FAILED, Status.STOPPED}  # what a worker may end a trial as
MAX_STEP = 100_000
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _metadata(context: grpc.ServicerContext | None, key: str) -> Any:
    if context is None:
        return None
    return next((value for k, value in context.invocation_metadata() if k == key), None)


def _caller(context: grpc.ServicerContext | None) -> str | None:
    caller = _metadata(context, CALLER)
    return None if caller is None else checks.tuner_id(caller)


def _acting(context: grpc.ServicerContext | None, method: str) -> str | None:
    """Who a call that changes the search acts as: the tuner id it names (which the token check
    has matched to its credential); None only for the coordinator's own calls, made in-process
    with no call context. A remote call without an id is refused."""
    if context is None:
        return None
    caller = _caller(context)
    if caller is None:
        raise checks.RequestError(f"{method} needs the caller's tuner id ({CALLER})")
    return caller


def refusing(method: F) -> F:
    """A call that fails a check (``fmtune.tuning.checks``) is answered INVALID_ARGUMENT, having
    changed nothing; it is counted against its caller, and logged once per caller and method, as
    the caller may not be ours."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except checks.RequestError as exc:
            peer = context.peer() if context is not None else "?"
            raw = _metadata(context, CALLER)
            who = str(raw)[:64] if raw is not None else peer
            self.oracle.refusals.note(who, method.__name__, str(exc), where=peer)
            if context is None:
                raise
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    return wrapper  # type: ignore[return-value]


class Servicer(service_grpc().OracleServicer):  # type: ignore[misc]
    """Keras Tuner's Oracle service on grpc.aio, with reports attributed to their caller and
    heartbeats on GetTrial.

    Calls run on the event loop, one at a time: each holds the oracle's lock for well under a
    millisecond, so many workers' calls share one thread rather than handing the interpreter
    between a thread each. Waiting for the disk holds nothing; a create that may wait for a
    suggestion (Bayesian search) waits on a thread of its own, so the other calls are answered
    meanwhile.
    """

    def __init__(self, oracle: FmtuneOracle, creators: futures.Executor | None = None, fixed_space: bool = True):
        """``fixed_space``: the hypermodel declares its whole space when built (fmtune's families);
        a user's may declare more as trials run (in a loop over layers, or in its fit), as Keras
        Tuner allows, and the values of what it adds are checked against what it declared."""
        self.oracle = oracle
        self._creators = creators
        self._fixed = fixed_space
        # The space the hypermodel declared; a chief with none yet takes the first worker's.
        self._declared: list[Any] = list(oracle.hyperparameters.space)
        self._hyperparameters: dict[str, Any] = {}  # trial id -> its values as a proto, made once
        self._spaces: dict[tuple[int, ...], tuple[list[Any], Any]] = {}  # see _trial_proto

    async def _on_disk(self, context: grpc.aio.ServicerContext | None) -> None:
        """Wait for the call's change to be on disk; while the coordinator cannot write it, the
        caller is told UNAVAILABLE, which it retries (``fmtune.tuning.persist``)."""
        try:
            await asyncio.wrap_future(self.oracle.persister.written())
        except NotWritten as exc:
            if context is None:
                raise
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))

    async def GetSpace(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return service_messages().GetSpaceResponse(hyperparameters=self.oracle.get_space().to_proto())

    @refusing
    async def UpdateSpace(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        _acting(context, "UpdateSpace")
        update = kt.HyperParameters.from_proto(request.hyperparameters)
        checks.space_update(self._declared, update.space, self._fixed and bool(self._declared))
        self.oracle.update_space(update)
        if not self._declared or not self._fixed:
            self._declared = list(self.oracle.hyperparameters.space)
        return service_messages().UpdateSpaceResponse()

    @refusing
    async def CreateTrial(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        tuner_id = checks.tuner_id(request.tuner_id)
        caller = _acting(context, "CreateTrial")
        if caller is not None and caller != tuner_id:
            raise checks.RequestError(f"caller {caller} asks for a trial as {tuner_id}")
        if self._creators is None:
            trial = self.oracle.create_trial(tuner_id)
        else:
            loop = asyncio.get_running_loop()
            trial = await loop.run_in_executor(self._creators, self.oracle.create_trial, tuner_id)
        response = service_messages().CreateTrialResponse(trial=self._trial_proto(trial))
        if trial.trial_id:
            self._hyperparameters[trial.trial_id] = response.trial.hyperparameters
        await self._on_disk(context)  # who holds which trial survives a coordinator restart
        return response

    def _values_proto(self, hyperparameters: Any) -> Any:
        """``hyperparameters.to_proto()`` with the search space's part, most of a create's cost,
        encoded once per space (trials share their hyperparameter objects until a worker adds one)."""
        space = hyperparameters.space
        key = tuple(map(id, space))
        cached = self._spaces.get(key)
        if cached is None:
            if len(self._spaces) >= 16:
                self._spaces.clear()
            # The objects are kept with their proto, so no other object can take their ids.
            cached = self._spaces[key] = (list(space), hyperparameters.to_proto().space)
        values_only = kt.HyperParameters()
        values_only.values = hyperparameters.values
        proto = values_only.to_proto()
        proto.space.CopyFrom(cached[1])
        return proto

    def _trial_proto(self, trial: Any) -> Any:
        """``trial.to_proto()``, its values through ``_values_proto``."""
        bare = copy.copy(trial)
        bare.hyperparameters = kt.HyperParameters()
        proto = bare.to_proto()
        proto.hyperparameters.CopyFrom(self._values_proto(trial.hyperparameters))
        return proto

    @refusing
    async def UpdateTrial(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Answered with the trial's id, values and status (what a worker reads from it), without
        its metrics, which would be most of the call's cost to encode."""
        if not 0 <= request.step <= MAX_STEP:
            raise checks.RequestError(f"step {request.step} is not an epoch number (0 to {MAX_STEP})")
        name = self.oracle.objective.name
        metrics = checks.metrics(request.metrics, name)
        checks.objective(name, metrics[name])
        caller = _acting(context, "UpdateTrial")
        trial = self.oracle.update_trial_from(caller, request.trial_id, metrics, step=request.step)
        values = self._hyperparameters.get(trial.trial_id)
        if values is None:
            values = self._hyperparameters[trial.trial_id] = self._values_proto(trial.hyperparameters)
        answer = proto_messages().Trial(
            trial_id=trial.trial_id, hyperparameters=values, status=Status.to_proto(trial.status)
        )
        return service_messages().UpdateTrialResponse(trial=answer)

    def _ended(self, proto: Any) -> Any:
        """The trial a worker ended, checked: its values are those it was sent, plus values for
        hyperparameters its hypermodel declared as it built (``checks.unchanged``), all within the
        declared space, and Keras Tuner's ``tuner/`` values within what the oracle sets. They are
        decoded, which is slow in Keras Tuner, only when they differ from those it was sent."""
        stored = self.oracle.trials.get(proto.trial_id)
        try:
            status = Status.from_proto(proto.status)
        except ValueError:
            raise checks.RequestError(f"unknown trial status {proto.status}") from None
        if status not in ENDED:
            raise checks.RequestError(f"a trial cannot end as {status}")
        limits = self.oracle.tuner_limits()
        space = list(self._declared or self.oracle.hyperparameters.space)
        if stored is None or proto.hyperparameters != self._hyperparameters.get(proto.trial_id):
            trial = Trial.from_proto(proto)
            values = trial.hyperparameters.values
            checks.space_update(space, trial.hyperparameters.space, self._fixed)
            known = {hp.name for hp in space}
            space += [hp for hp in trial.hyperparameters.space if hp.name not in known]
        else:
            trial = Trial(stored.hyperparameters, trial_id=proto.trial_id, status=status)
            values = stored.hyperparameters.values
        checks.values_in_space(space, values)
        checks.tuner_values(values, limits)
        if stored is not None:
            checks.unchanged(stored.hyperparameters.values, values)
        return trial

    @refusing
    async def EndTrial(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        caller = _acting(context, "EndTrial")
        trial = self._ended(request.trial)
        objective, stored = self.oracle.objective.name, self.oracle.trials.get(trial.trial_id)
        if trial.status == Status.COMPLETED and stored is not None and not stored.metrics.exists(objective):
            # Keras Tuner would fail to score it, half-way through ending it.
            raise checks.RequestError(f"a trial cannot complete without having reported {objective}")
        message = _metadata(context, MESSAGE)
        if message:
            trial.message = message.decode(errors="replace")
        self.oracle.end_trial_from(caller, trial)
        if not self._fixed:  # what the trial's hypermodel declared as it built is declared now
            self._declared = list(self.oracle.hyperparameters.space)
        await self._on_disk(context)  # a result is on disk before the worker hears it was taken
        self.oracle.log_ended(trial.trial_id)
        return service_messages().EndTrialResponse()

    @refusing
    async def GetTrial(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """A worker's heartbeat for its trial; without a tuner id (only the secret's holder can
        call so when the service asks for credentials), a read-only lookup."""
        caller = _caller(context)
        if caller is None and request.trial_id not in self.oracle.trials:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no trial {request.trial_id[:40]!r}")
        trial = self.oracle.heartbeat(request.trial_id, caller) if caller else self.oracle.get_trial(request.trial_id)
        return service_messages().GetTrialResponse(trial=trial.to_proto())

    async def GetBestTrials(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        trials = self.oracle.get_best_trials(request.num_trials)
        return service_messages().GetBestTrialsResponse(trials=[t.to_proto() for t in trials])


def start(
    oracle: FmtuneOracle,
    address: str,
    token: str | None = None,
    fixed_space: bool = True,
    metrics: CollectorRegistry | None = None,
) -> tuple[AioServer, futures.Executor | None]:
    """Serve the oracle at ``address``, to callers with a credential made from ``token`` (the
    experiment's secret) if one is given; returns the server and the creators' pool to shut down.
    ``fixed_space``: see ``Servicer``; ``metrics``: where the calls' latency is counted."""
    creators = (
        futures.ThreadPoolExecutor(CREATE_THREADS, thread_name_prefix="oracle-create")
        if oracle.create_may_wait
        else None
    )
    servicer = Servicer(oracle, creators, fixed_space)
    register = service_grpc().add_OracleServicer_to_server
    note = oracle.refusals.note
    interceptors: list[grpc.aio.ServerInterceptor] = (
        [auth.TokenCheck(token, on_refused=lambda who, why: note(who, "unauthenticated", why))] if token else []
    )
    if metrics is not None:  # after the token check: refused callers are not timed
        interceptors.append(RpcTimer(metrics))
    server = AioServer(lambda s: register(servicer, s), address, name="oracle-rpc", interceptors=interceptors)
    return server, creators
