"""The oracle's wire under attack from its own workers (property-based): random sequences of calls
from two workers, each with its own credential, many of them forged (another worker's id, a wrong
credential, no id, values outside the space, Keras Tuner's tuner/ values, huge or NaN objectives),
go through the real token check and the real servicer methods, in process. Whatever the sequence,
the best trial is one that its holder completed itself, with values inside the declared space and
only the metrics it reported."""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import keras_tuner as kt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmtune.tuning import auth, checks
from fmtune.tuning.headers import AUTHORIZATION, CALLER
from fmtune.tuning.kt_internals import Status, proto_messages, service_messages
from fmtune.tuning.servicer import Servicer

from .conftest import Aborted, Context, service_oracle

SECRET = auth.new_token()
WORKERS = ("tuner0", "tuner1")
messages = service_messages()


def metadata(me: str, identity: str) -> tuple[tuple[str, str], ...]:
    """What worker ``me`` sends when it calls as ``identity``."""
    other = WORKERS[1 - WORKERS.index(me)]
    mine = (AUTHORIZATION, f"Bearer {auth.worker_credential(SECRET, me)}")
    return {
        "own": ((CALLER, me), mine),
        "as other": ((CALLER, other), mine),
        "wrong credential": ((CALLER, me), (AUTHORIZATION, f"Bearer {auth.new_token()}")),
        "other's derived guess": ((CALLER, other), (AUTHORIZATION, f"Bearer {auth.worker_credential(me, other)}")),
        "no id": (mine,),
        "no id, no credential": (),
        "the secret, no id": ((AUTHORIZATION, f"Bearer {SECRET}"),),  # a reader's: not a worker's
    }[identity]


async def admitted(check: auth.TokenCheck, sent: tuple[tuple[str, str], ...]) -> bool:
    async def through(details: Any) -> str:
        return "through"

    details = SimpleNamespace(method="/keras_tuner.OracleService/Call", invocation_metadata=sent)
    return await check.intercept_service(through, details) == "through"  # type: ignore[arg-type]


IDENTITIES = [
    "own",
    "as other",
    "wrong credential",
    "other's derived guess",
    "no id",
    "no id, no credential",
    "the secret, no id",
]
OBJECTIVES = st.floats(0.0, 1.0) | st.sampled_from([1e300, 1.5, -0.2, float("nan"), float("inf"), -1e300])
TARGETS = st.sampled_from(["mine", "theirs", "an earlier one", "made up"])
VALUES = st.sampled_from(["as sent", "units 10^9", "units changed", "tuner/epochs", "tuner/trial_id", "extra name"])
STATUSES = st.sampled_from(["COMPLETED", "INVALID", "FAILED", "STOPPED"])
SPACES = st.sampled_from(["redeclare units", "new name", "as declared"])

calls = st.lists(
    st.tuples(
        st.sampled_from(WORKERS),
        st.sampled_from(IDENTITIES),
        st.one_of(
            st.tuples(st.just("create"), st.booleans()),
            st.tuples(st.just("update"), TARGETS, OBJECTIVES),
            st.tuples(st.just("end"), TARGETS, STATUSES, VALUES),
            st.tuples(st.just("get"), TARGETS),
            st.tuples(st.just("space"), SPACES),
        ),
    ),
    min_size=1,
    max_size=25,
)


class Wire:
    """The oracle behind its token check and servicer, and what its honest side did."""

    def __init__(self, directory: Path) -> None:
        self.oracle = service_oracle(directory)  # units 8..64 step 8, learning_rate 0.001 or 0.01
        self.declared = list(self.oracle.hyperparameters.space)
        self.service = Servicer(self.oracle)
        self.check = auth.TokenCheck(SECRET)
        self.completed_by_holder: set[str] = set()
        self.reported: dict[str, list[float]] = {}  # trial id -> what its holder reported, itself

    def target(self, me: str, which: str) -> str | None:
        other = WORKERS[1 - WORKERS.index(me)]
        held = {w: t.trial_id for w, t in self.oracle.ongoing_trials.items()}
        return {
            "mine": held.get(me),
            "theirs": held.get(other),
            "an earlier one": min(self.oracle.trials, default=None),
            "made up": "zz",
        }[which]

    def ended_proto(self, trial_id: str, status: str, values: str) -> Any:
        sent = self.service._hyperparameters.get(trial_id)
        proto = proto_messages().Trial(trial_id=trial_id, status=Status.to_proto(status))
        if sent is not None:
            proto.hyperparameters.CopyFrom(sent)
        if values == "as sent" or sent is None:
            return proto
        hp = kt.HyperParameters.from_proto(sent)
        change = {
            "units 10^9": {"units": 10**9},
            "units changed": {"units": 8 if hp.values.get("units") != 8 else 16},
            "tuner/epochs": {"tuner/epochs": 10**9},
            "tuner/trial_id": {"tuner/trial_id": "../../../etc"},
        }.get(values)
        if change is None:
            hp.Int("extra", 1, 4)
        else:
            hp.values.update(change)
        proto.hyperparameters.CopyFrom(hp.to_proto())
        return proto

    async def call(self, me: str, identity: str, action: tuple[Any, ...]) -> None:
        sent = metadata(me, identity)
        if not await admitted(self.check, sent):
            assert identity != "own"
            return
        context = Context(metadata=sent)
        kind = action[0]
        if kind == "create":
            tuner_id = me if action[1] else WORKERS[1 - WORKERS.index(me)]
            await self.service.CreateTrial(messages.CreateTrialRequest(tuner_id=tuner_id), context)
            return
        if kind == "space":
            hp = kt.HyperParameters()
            hp.Choice("learning_rate", [0.001, 0.01])
            if action[1] == "redeclare units":
                with hp.conditional_scope("learning_rate", [0.001, 0.01]):
                    hp.Int("units", 10**9, 10**9 + 8, step=8)
            elif action[1] == "new name":
                hp.Int("extra", 1, 10**9)
            await self.service.UpdateSpace(messages.UpdateSpaceRequest(hyperparameters=hp.to_proto()), context)
            return
        trial_id = self.target(me, action[1])
        if trial_id is None:
            return
        holder = self.oracle.holder(trial_id)
        honest = identity == "own" and holder == me
        if kind == "get":
            await self.service.GetTrial(messages.GetTrialRequest(trial_id=trial_id), context)
        elif kind == "update":
            value = action[2]
            request = messages.UpdateTrialRequest(trial_id=trial_id, metrics={"val_accuracy": value}, step=0)
            await self.service.UpdateTrial(request, context)
            if honest:  # taken (or the call would have raised)
                self.reported.setdefault(trial_id, []).append(value)
        else:
            status, values = action[2], action[3]
            proto = self.ended_proto(trial_id, status, values)
            await self.service.EndTrial(messages.EndTrialRequest(trial=proto), context)
            if honest and status == "COMPLETED" and values == "as sent":
                self.completed_by_holder.add(trial_id)

    def check_invariant(self) -> None:
        assert len(self.oracle.hyperparameters.space) == 2  # the space as declared, nothing merged
        for trial in self.oracle.trials.values():  # every trial's values are in the space
            values = trial.hyperparameters.values
            checks.values_in_space(self.declared, values)
            assert not any(name.startswith("tuner/") for name in values)
        best = self.oracle.best_trial_id()
        for found in [best, *(t.trial_id for t in self.oracle.trials.values() if t.status == "COMPLETED")]:
            if found is None:
                continue
            assert found in self.completed_by_holder, found
            trial = self.oracle.trials[found]
            assert 8 <= trial.hyperparameters.values["units"] <= 64
            history = [v for o in trial.metrics.get_history("val_accuracy") for v in o.value]
            assert all(any(v == r or (math.isnan(v) and math.isnan(r)) for r in self.reported[found]) for v in history)
            assert trial.score is None or 0.0 <= trial.score <= 1.0


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(sequence=calls)
def test_the_best_trial_is_one_its_holder_completed_inside_the_space(sequence: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        wire = Wire(Path(directory))

        async def play() -> None:
            for me, identity, action in sequence:
                with contextlib.suppress(Aborted, checks.RequestError):
                    await wire.call(me, identity, action)
                wire.check_invariant()

        asyncio.run(play())
