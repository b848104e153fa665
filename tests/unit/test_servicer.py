"""The chief's side of the Oracle service (``fmtune.tuning.servicer``): its calls as Keras Tuner
encodes them, the calls it refuses having changed nothing, and, over a real loopback gRPC server,
any sequence of malformed and out-of-order calls (property-based): every answer is a result or a
typed refusal, the service keeps answering, and what it saved loads again after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import keras_tuner as kt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmtune.models.families import MLP
from fmtune.tuning import auth, kt_internals, servicer
from fmtune.tuning.checks import RequestError
from fmtune.tuning.headers import CALLER
from fmtune.tuning.kt_internals import Trial, service_messages
from fmtune.tuning.oracle import FmtuneOracle
from fmtune.tuning.roles import free_port
from fmtune.tuning.servicer import Servicer

from .conftest import Aborted, Context, bayesian_oracle, service_oracle

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


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Path]]:
    directory = tmp_path_factory.mktemp("oracle")
    oracle = service_oracle(directory)
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


def wire_status(status: str) -> int:
    """A trial status as the Oracle service sends it."""
    return int(kt_internals.Status.to_proto(status))


def test_calls_that_fail_a_check_are_refused_and_change_nothing(tmp_path: Path) -> None:
    oracle = service_oracle(tmp_path)
    service = Servicer(oracle)
    messages = service_messages()
    trial = asyncio.run(service.CreateTrial(messages.CreateTrialRequest(tuner_id="tuner0"), Context("tuner0"))).trial
    before = oracle.trials[trial.trial_id].metrics.get_config()
    refused = [
        ({"val_accuracy": 0.5}, -1, r"step -1 is not an epoch number \(0 to 100000\)"),
        ({"val_accuracy": 0.5}, 100_001, "step 100001 is not an epoch number"),
        ({"loss": 0.5}, 0, "a report must hold the objective, val_accuracy"),
        ({"val_accuracy": float("inf")}, 0, "metric val_accuracy is infinite"),
        ({"val_accuracy": 0.5, "bad name": 0.1}, 0, "metric name 'bad name' is not 1-128 letters"),
    ]
    for metrics, step, reason in refused:
        request = messages.UpdateTrialRequest(trial_id=trial.trial_id, metrics=metrics, step=step)
        with pytest.raises(RequestError, match=reason):  # no context: the check's error itself
            asyncio.run(service.UpdateTrial(request, None))
    running = kt_internals.proto_messages().Trial(trial_id=trial.trial_id, status=wire_status("RUNNING"))
    with pytest.raises(RequestError, match="a trial cannot end as RUNNING"):
        asyncio.run(service.EndTrial(messages.EndTrialRequest(trial=running), None))
    unknown = kt_internals.proto_messages().Trial(trial_id=trial.trial_id, status=99)
    with pytest.raises(RequestError, match="unknown trial status 99"):
        asyncio.run(service.EndTrial(messages.EndTrialRequest(trial=unknown), None))
    with pytest.raises(RequestError, match="tuner id 'chief' is the coordinator's own"):
        asyncio.run(service.CreateTrial(messages.CreateTrialRequest(tuner_id="chief"), None))
    assert oracle.trials[trial.trial_id].metrics.get_config() == before
    assert oracle.trials[trial.trial_id].status == "RUNNING" and len(oracle.trials) == 1
    # The last step allowed is taken.
    last = messages.UpdateTrialRequest(trial_id=trial.trial_id, metrics={"val_accuracy": 0.5}, step=100_000)
    answer = asyncio.run(service.UpdateTrial(last, Context("tuner0"))).trial
    assert (answer.trial_id, answer.status) == (trial.trial_id, wire_status("RUNNING"))
    assert [o.step for o in oracle.trials[trial.trial_id].metrics.get_history("val_accuracy")] == [100_000]


def test_a_refused_call_is_answered_invalid_argument_and_logged_with_its_peer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    oracle = service_oracle(tmp_path)
    service = Servicer(oracle)
    context = Context("tuner0")
    with caplog.at_level(logging.WARNING, "fmtune"), pytest.raises(Aborted):
        asyncio.run(service.CreateTrial(service_messages().CreateTrialRequest(tuner_id="tuner1"), context))
    assert context.aborted == (grpc.StatusCode.INVALID_ARGUMENT, "caller tuner0 asks for a trial as tuner1")
    assert caplog.messages == ["refused CreateTrial from ipv4:10.0.0.9:5555: caller tuner0 asks for a trial as tuner1"]
    assert not oracle.trials and not oracle.tuner_ids


def test_a_trial_asked_for_by_no_worker_is_looked_up_and_one_asked_for_by_its_worker_is_a_heartbeat(
    tmp_path: Path,
) -> None:
    oracle = service_oracle(tmp_path)
    service = Servicer(oracle)
    messages = service_messages()
    trial = oracle.create_trial("tuner0")
    context = Context(None)
    with pytest.raises(Aborted):
        asyncio.run(service.GetTrial(messages.GetTrialRequest(trial_id="nope"), context))
    assert context.aborted == (grpc.StatusCode.NOT_FOUND, "no trial 'nope'")
    looked_up = asyncio.run(service.GetTrial(messages.GetTrialRequest(trial_id=trial.trial_id), Context(None)))
    assert looked_up.trial.status == wire_status("RUNNING")
    # A heartbeat from a worker that does not hold the trial tells it to stop.
    other = asyncio.run(service.GetTrial(messages.GetTrialRequest(trial_id=trial.trial_id), Context("tuner1")))
    own = asyncio.run(service.GetTrial(messages.GetTrialRequest(trial_id=trial.trial_id), Context("tuner0")))
    assert (other.trial.status, own.trial.status) == (wire_status("STOPPED"), wire_status("RUNNING"))
    assert oracle.holder(trial.trial_id) == "tuner0"


def test_an_ended_trial_skips_decoding_unchanged_values_and_refuses_added_ones(tmp_path: Path) -> None:
    oracle = bayesian_oracle(tmp_path)
    servicer = Servicer(oracle)
    request = service_messages().CreateTrialRequest(tuner_id="tuner0")
    sent = asyncio.run(servicer.CreateTrial(request, None)).trial
    sent.status = kt_internals.proto_messages().TrialStatus.COMPLETED
    unchanged = servicer._ended(sent)
    assert unchanged.hyperparameters is oracle.trials[sent.trial_id].hyperparameters
    grown = oracle.trials[sent.trial_id].hyperparameters.copy()
    grown.Int("extra", 1, 4)  # a hyperparameter the hypermodel never declared
    changed = type(sent)()
    changed.CopyFrom(sent)
    changed.hyperparameters.CopyFrom(grown.to_proto())
    with pytest.raises(RequestError, match="undeclared hyperparameter"):
        servicer._ended(changed)


def test_trials_are_sent_as_keras_tuner_encodes_them(tmp_path: Path) -> None:
    space = kt.HyperParameters()
    MLP().build(space)  # conditional values: num_layers decides which units_i are active
    cls = type("Ours", (FmtuneOracle, kt.oracles.RandomSearchOracle), {})
    oracle = cls(objective=kt.Objective("score", "max"), max_trials=40, hyperparameters=space, seed=1)
    oracle.verbose = 0
    oracle.set_project_dir(tmp_path, "p")
    servicer = Servicer(oracle)
    trials = [oracle.create_trial(f"w{i}") for i in range(20)]
    grown = trials[0].hyperparameters.copy()
    grown.Int("extra", 1, 4)  # a space a worker added to: encoded afresh
    trials.append(Trial(grown, trial_id="x", status="RUNNING"))
    assert all(servicer._trial_proto(t) == t.to_proto() for t in trials)


def test_a_caller_cannot_steer_the_search_outside_its_space(tmp_path: Path) -> None:
    """Reproduces the security reading's finding: a caller takes a trial, reports val_accuracy=1.0
    and ends it with units=10**9 where the space declares 8-64; then grows the space by 2,000."""
    token = auth.new_token()
    oracle = service_oracle(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    server, _ = servicer.start(oracle, address, token)
    messages = kt_internals.service_messages()
    metadata = (("fmtune-tuner-id", "tuner0"), *auth.call_metadata(token))
    try:
        with grpc.insecure_channel(address) as channel:
            stub = kt_internals.service_grpc().OracleStub(channel)
            trial = stub.CreateTrial(messages.CreateTrialRequest(tuner_id="tuner0"), metadata=metadata).trial
            stub.UpdateTrial(
                messages.UpdateTrialRequest(trial_id=trial.trial_id, metrics={"val_accuracy": 1.0}), metadata=metadata
            )
            oracle.persister.flush()
            trial_file = oracle.trial_file(trial.trial_id)
            before = trial_file.read_bytes()
            forged = kt.HyperParameters.from_proto(trial.hyperparameters)
            forged.values["units"] = 10**9
            trial.hyperparameters.CopyFrom(forged.to_proto())
            trial.status = kt_internals.proto_messages().TrialStatus.COMPLETED
            with pytest.raises(grpc.RpcError) as info:
                stub.EndTrial(messages.EndTrialRequest(trial=trial), metadata=metadata)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "units" in str(info.value.details()) and "outside the search space" in str(info.value.details())
            oracle.persister.flush()
            assert trial_file.read_bytes() == before and oracle.trials[trial.trial_id].status == "RUNNING"

            grown = kt.HyperParameters()
            for i in range(2000):
                grown.Int(f"extra_{i}", 1, 4)
            with pytest.raises(grpc.RpcError) as info:
                stub.UpdateSpace(messages.UpdateSpaceRequest(hyperparameters=grown.to_proto()), metadata=metadata)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert len(oracle.hyperparameters.space) == 2
    finally:
        server.stop(grace=0.5)


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
    again = service_oracle(directory)
    again.reload()
    assert sorted(again.trials) == sorted(oracle.trials)
    assert {t: again.trials[t].status for t in again.trials} == {t: oracle.trials[t].status for t in oracle.trials}
