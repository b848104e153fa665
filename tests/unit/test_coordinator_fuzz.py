"""The coordinator's Oracle service against malformed and out-of-order calls (property-based),
over a real loopback gRPC server: every answer is a result or a typed refusal, the service keeps
answering, and what it saved loads again after a restart."""

from __future__ import annotations

import contextlib
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import keras_tuner as kt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmtune import config
from fmtune.tuning import kt_internals, servicer
from fmtune.tuning.algorithms import make_oracle
from fmtune.tuning.headers import CALLER
from fmtune.tuning.roles import free_port

from ..conftest import CLASSIC

TYPED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
VISIBLE = "".join(chr(c) for c in range(0x20, 0x7F))  # what gRPC lets a metadata value hold
ids = st.sampled_from(["tuner0", "tuner1", "tuner2"]) | st.text(VISIBLE, max_size=70)
trial_ids = st.sampled_from([str(i) for i in range(6)]) | st.text(string.printable, max_size=12)
metric_names = st.sampled_from(["val_accuracy", "loss", "accuracy"]) | st.text(string.printable, max_size=140)
numbers = st.floats(allow_nan=True, allow_infinity=True)
values = st.dictionaries(
    st.sampled_from(["units", "learning_rate", "extra", "tuner/epochs"]) | st.text(max_size=10),
    st.integers(-(2**40), 2**40) | numbers | st.text(max_size=10) | st.booleans(),
    max_size=4,
)


def oracle_for(directory: Path) -> Any:
    cfg = config.load(
        "quick", None, [*CLASSIC, "search.algorithm=random", "search.max_trials=6"], environ={}
    )
    oracle = make_oracle(cfg)
    oracle.set_project_dir(directory, "search")
    space = kt.HyperParameters()
    space.Int("units", 8, 64, step=8)
    space.Choice("learning_rate", [0.001, 0.01])
    oracle.update_space(space)
    return oracle


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Path]]:
    directory = tmp_path_factory.mktemp("oracle")
    oracle = oracle_for(directory)
    oracle.start_background()
    address = f"127.0.0.1:{free_port()}"
    server, _ = servicer.start(oracle, address)
    channel = grpc.insecure_channel(address)
    stub = kt_internals.service_grpc().OracleStub(channel)
    try:
        yield oracle, stub, directory
    finally:
        channel.close()
        server.stop(grace=0.5)
        oracle.stop_background()


def call(method: Any, request: Any, caller: str | None) -> None:
    metadata = () if caller is None else ((CALLER, caller),)
    try:
        method(request, metadata=metadata, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() in TYPED, (exc.code(), exc.details())


def ended_trial(trial_id: str, status: int, hp_values: dict[str, Any]) -> Any:
    space = kt.HyperParameters()
    space.Int("units", 8, 64, step=8)
    space.Choice("learning_rate", [0.001, 0.01])
    for name, value in hp_values.items():
        try:
            space.values[name] = value
        except (TypeError, ValueError):
            continue
    proto = kt_internals.proto_messages().Trial(trial_id=trial_id, status=status)
    with contextlib.suppress(TypeError, ValueError, OverflowError):  # a value the client cannot even encode
        proto.hyperparameters.CopyFrom(space.to_proto())
    return proto


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    calls=st.lists(
        st.one_of(
            st.tuples(st.just("create"), ids, ids | st.none()),
            st.tuples(
                st.just("update"),
                trial_ids,
                ids | st.none(),
                st.dictionaries(metric_names, numbers, max_size=70),
                st.integers(-(2**40), 2**40),
            ),
            st.tuples(st.just("end"), trial_ids, ids | st.none(), st.integers(0, 8), values),
            st.tuples(st.just("get"), trial_ids, ids | st.none()),
            st.tuples(st.just("space"), st.lists(st.text(string.ascii_letters, min_size=1, max_size=8), max_size=3)),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_sequence_of_calls_gets_results_or_typed_refusals(service: Any, calls: list[tuple[Any, ...]]) -> None:
    oracle, stub, _ = service
    messages = kt_internals.service_messages()
    for kind, *args in calls:
        if kind == "create":
            call(stub.CreateTrial, messages.CreateTrialRequest(tuner_id=args[0]), args[1])
        elif kind == "update":
            trial_id, caller, metrics, step = args
            request = messages.UpdateTrialRequest(trial_id=trial_id, metrics=metrics, step=step)
            call(stub.UpdateTrial, request, caller)
        elif kind == "end":
            trial_id, caller, status, hp_values = args
            call(stub.EndTrial, messages.EndTrialRequest(trial=ended_trial(trial_id, status, hp_values)), caller)
        elif kind == "get":
            call(stub.GetTrial, messages.GetTrialRequest(trial_id=args[0]), args[1])
        else:
            space = kt.HyperParameters()
            for name in args[0]:
                space.Int(name, 1, 4)
            call(stub.UpdateSpace, messages.UpdateSpaceRequest(hyperparameters=space.to_proto()), "tuner0")
    # The service still answers, and the space is what was declared.
    stub.GetSpace(messages.GetSpaceRequest(), timeout=10)
    assert {hp.name for hp in oracle.hyperparameters.space} == {"units", "learning_rate"}
    for trial in oracle.trials.values():
        assert trial.status in (*kt_internals.FINISHED, "RUNNING", "IDLE", "INVALID")  # INVALID: waits for a retry
        assert set(trial.hyperparameters.values) <= {"units", "learning_rate"}, trial.hyperparameters.values


def test_what_the_fuzzed_coordinator_saved_loads_after_a_restart(service: Any) -> None:
    oracle, _, directory = service
    oracle.persister.flush()
    again = oracle_for(directory)
    again.reload()
    assert sorted(again.trials) == sorted(oracle.trials)
    assert {t: again.trials[t].status for t in again.trials} == {t: oracle.trials[t].status for t in oracle.trials}
