"""The oracle's token: a caller without it is refused UNAUTHENTICATED, and the log says why."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest

from fmtune import layout
from fmtune.tuning import auth, kt_internals, servicer
from fmtune.tuning.roles import free_port

from .conftest import service_oracle as oracle_for


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


def test_a_worker_with_a_wrong_token_stops_with_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
