"""The oracle's token: a caller without it is refused UNAUTHENTICATED, and the log says why."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest

from fmtune import layout
from fmtune.tuning import auth, kt_internals, servicer
from fmtune.tuning.roles import free_port

from .test_coordinator_fuzz import oracle_for


@pytest.mark.parametrize("sent", [None, "wrong", "right"])
def test_only_callers_with_the_token_get_an_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sent: str | None
) -> None:
    token = auth.new_token()
    oracle = oracle_for(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    server, _ = servicer.start(oracle, address, token)
    request = kt_internals.service_messages().GetSpaceRequest()
    metadata = auth.call_metadata({"right": token, "wrong": auth.new_token()}.get(sent or "")) if sent else ()
    try:
        with grpc.insecure_channel(address) as channel, caplog.at_level(logging.WARNING, "fmtune"):
            stub = kt_internals.service_grpc().OracleStub(channel)
            if sent == "right":
                assert stub.GetSpace(request, metadata=metadata, timeout=10).hyperparameters.space
                assert not caplog.records
            else:
                with pytest.raises(grpc.RpcError) as info:
                    stub.GetSpace(request, metadata=metadata, timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert auth.TOKEN_ENV in str(info.value.details())
                assert f"with {'a wrong token' if sent else 'no token'}" in caplog.text
    finally:
        server.stop(grace=0.5)


def test_the_coordinator_keeps_its_token_in_the_work_dir_for_its_workers(tmp_path: Path) -> None:
    made = auth.coordinator_token(tmp_path, environ={})
    assert (tmp_path / layout.TOKEN).stat().st_mode & 0o777 == 0o600
    assert auth.coordinator_token(tmp_path, environ={}) == made  # a restarted coordinator keeps it
    assert auth.token(tmp_path, environ={}) == made  # what a worker sharing the work dir finds
    assert auth.token(tmp_path, environ={auth.TOKEN_ENV: "given"}) == "given"  # the environment wins
    assert auth.token(tmp_path / "elsewhere", environ={}) is None


def test_a_worker_with_a_wrong_token_stops_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmtune.tuning.oracle_client import Client, CoordinatorRefused

    oracle = oracle_for(tmp_path)
    port = free_port()
    server, _ = servicer.start(oracle, f"127.0.0.1:{port}", auth.new_token())
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    try:
        client = Client(oracle, "tuner0", timeout=10, token=lambda: "not-the-token")
        with pytest.raises(CoordinatorRefused, match=auth.TOKEN_ENV):
            client.get_space()
    finally:
        server.stop(grace=0.5)


def test_a_caller_cannot_steer_the_search_outside_its_space(tmp_path: Path) -> None:
    """Reproduces the security reading's finding: a caller takes a trial, reports val_accuracy=1.0
    and ends it with units=10**9 where the space declares 8-64; then grows the space by 2,000."""
    import keras_tuner as kt

    token = auth.new_token()
    oracle = oracle_for(tmp_path)
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
