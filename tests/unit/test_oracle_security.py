"""What a worker cannot do to the search (issue 34, second pass), one test per finding, against
the real servicer and Keras Tuner oracle: a worker is trusted with its own trial and no more."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import grpc
import keras_tuner as kt
import pytest

from fmtune.tuning import auth, checks, kt_internals, servicer
from fmtune.tuning.checks import RequestError
from fmtune.tuning.headers import AUTHORIZATION, CALLER
from fmtune.tuning.kt_internals import service_messages
from fmtune.tuning.roles import free_port
from fmtune.tuning.servicer import Servicer

from .conftest import Aborted, Context, oracle_for, service_oracle

messages = service_messages()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def create(service: Servicer, caller: str) -> Any:
    return run(service.CreateTrial(messages.CreateTrialRequest(tuner_id=caller), Context(caller))).trial


def report(service: Servicer, caller: str | None, trial_id: str, value: float, name: str = "val_accuracy") -> Any:
    request = messages.UpdateTrialRequest(trial_id=trial_id, metrics={name: value}, step=0)
    return run(service.UpdateTrial(request, Context(caller))).trial


def end(service: Servicer, caller: str | None, proto: Any, status: str = "COMPLETED") -> None:
    ended = type(proto)()
    ended.CopyFrom(proto)
    ended.status = kt_internals.Status.to_proto(status)
    run(service.EndTrial(messages.EndTrialRequest(trial=ended), Context(caller)))


def with_values(proto: Any, **values: Any) -> Any:
    """``proto`` with some of its values changed, as a worker would send them."""
    hp = kt.HyperParameters.from_proto(proto.hyperparameters)
    hp.values.update({k.replace("__", "/"): v for k, v in values.items()})
    changed = type(proto)()
    changed.CopyFrom(proto)
    changed.hyperparameters.CopyFrom(hp.to_proto())
    return changed


def refused(call: Any) -> str:
    """The reason the servicer refused ``call`` (INVALID_ARGUMENT)."""
    with pytest.raises(Aborted) as info:
        call()
    return str(info.value)


# -- 1. the space ---------------------------------------------------------------------------------


def test_a_space_update_cannot_redeclare_a_hyperparameter_so_the_sampler_never_leaves_the_space(
    tmp_path: Path,
) -> None:
    """A second ``units`` under a condition that always holds: Keras Tuner would merge it, and its
    sampler hand out units = 10^9, and that trial would complete and be the best."""
    oracle = service_oracle(tmp_path)  # units 8..64 step 8, learning_rate 0.001 or 0.01
    service = Servicer(oracle)
    forged = kt.HyperParameters()
    forged.Choice("learning_rate", [0.001, 0.01])
    with forged.conditional_scope("learning_rate", [0.001, 0.01]):  # always true
        forged.Int("units", 10**9, 10**9 + 8, step=8)
    request = messages.UpdateSpaceRequest(hyperparameters=forged.to_proto())
    reason = refused(lambda: run(service.UpdateSpace(request, Context("tuner0"))))
    assert "units is declared already" in reason
    assert len(oracle.hyperparameters.space) == 2
    trial = create(service, "tuner0")
    assert 8 <= oracle.trials[trial.trial_id].hyperparameters.values["units"] <= 64
    report(service, "tuner0", trial.trial_id, 0.9)
    end(service, "tuner0", trial)  # the values it was sent: checked too, and in the space
    best = oracle.get_best_trials(1)[0]
    assert best.trial_id == trial.trial_id and 8 <= best.hyperparameters.values["units"] <= 64


def test_the_values_the_coordinator_sent_are_checked_against_the_declared_space_too(tmp_path: Path) -> None:
    """The short path for values equal to those sent still checks them: if the oracle's space were
    ever wider than declared, a trial drawn from it is refused, not made the best."""
    oracle = service_oracle(tmp_path)
    service = Servicer(oracle)
    trial = create(service, "tuner0")
    oracle.trials[trial.trial_id].hyperparameters.values["units"] = 10**9  # as a merged space would draw
    report(service, "tuner0", trial.trial_id, 0.9)
    assert "units = '1000000000' is outside the search space" in refused(lambda: end(service, "tuner0", trial))
    assert oracle.trials[trial.trial_id].status == "RUNNING" and oracle.best_trial_id() is None


def test_a_growing_space_takes_new_names_within_bounds_and_never_redeclares_one(tmp_path: Path) -> None:
    oracle = service_oracle(tmp_path)
    service = Servicer(oracle, fixed_space=False)

    def update(hp: kt.HyperParameters) -> Any:
        return run(service.UpdateSpace(messages.UpdateSpaceRequest(hyperparameters=hp.to_proto()), Context("tuner0")))

    grown = kt.HyperParameters()
    grown.Int("layers", 1, 4)
    update(grown)  # a user's hypermodel declaring more as it builds
    assert {hp.name for hp in oracle.hyperparameters.space} == {"units", "learning_rate", "layers"}
    again = kt.HyperParameters()
    again.Boolean("flag")
    with again.conditional_scope("flag", [True]):
        again.Int("layers", 1, 10**9)
    assert "layers is declared already" in refused(lambda: update(again))
    many = kt.HyperParameters()
    for i in range(checks.MAX_HYPERPARAMETERS):
        many.Int(f"extra_{i}", 1, 4)
    assert f"at most {checks.MAX_HYPERPARAMETERS}" in refused(lambda: update(many))
    wide = kt.HyperParameters()
    wide.Choice("activation", [f"a{i}" for i in range(checks.MAX_CHOICES + 1)])
    assert "choices" in refused(lambda: update(wide))
    long = kt.HyperParameters()
    long.Fixed("note", "x" * (checks.MAX_TEXT + 1))
    assert "characters" in refused(lambda: update(long))
    assert {hp.name for hp in oracle.hyperparameters.space} == {"units", "learning_rate", "layers"}


# -- 2. who the caller is -------------------------------------------------------------------------


def test_a_call_without_a_tuner_id_cannot_report_into_nor_end_a_running_trial(tmp_path: Path) -> None:
    """Without the id, the old ownership check asked only that someone held the trial."""
    oracle = service_oracle(tmp_path)
    service = Servicer(oracle)
    trial = create(service, "tuner0")
    assert "UpdateTrial needs the caller's tuner id" in refused(lambda: report(service, None, trial.trial_id, 0.99))
    assert "EndTrial needs the caller's tuner id" in refused(lambda: end(service, None, trial))
    assert "CreateTrial needs the caller's tuner id" in refused(
        lambda: run(service.CreateTrial(messages.CreateTrialRequest(tuner_id="tuner1"), Context(None)))
    )
    assert not oracle.trials[trial.trial_id].metrics.exists("val_accuracy")
    assert oracle.trials[trial.trial_id].status == "RUNNING" and oracle.best_trial_id() is None
    # A reader without an id still looks trials up (GetTrial, GetBestTrials), changing nothing.
    looked_up = run(service.GetTrial(messages.GetTrialRequest(trial_id=trial.trial_id), Context(None)))
    assert looked_up.trial.status == kt_internals.Status.to_proto("RUNNING")
    run(service.GetBestTrials(messages.GetBestTrialsRequest(num_trials=1), Context(None)))


def test_a_worker_cannot_report_heartbeat_or_end_another_workers_trial(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path, "search.max_trials=6", "fault_tolerance.max_consecutive_failures=2")
    service = Servicer(oracle)
    theirs = create(service, "tuner0")
    create(service, "tuner1")
    assert report(service, "tuner1", theirs.trial_id, 0.99).status == kt_internals.Status.to_proto("STOPPED")
    heartbeat = run(service.GetTrial(messages.GetTrialRequest(trial_id=theirs.trial_id), Context("tuner1")))
    assert heartbeat.trial.status == kt_internals.Status.to_proto("STOPPED")
    for _ in range(3):
        end(service, "tuner1", theirs, "FAILED")
    assert oracle.trials[theirs.trial_id].status == "RUNNING" and oracle.holder(theirs.trial_id) == "tuner0"
    assert not oracle.trials[theirs.trial_id].metrics.exists("val_accuracy") and not oracle.control.closed()
    counted = oracle.refusals.by_worker()["tuner1"]
    assert counted == {
        "report for another's trial": 1,
        "heartbeat for another's trial": 1,
        "end for another's trial": 3,
    }


@pytest.fixture
def served(tmp_path: Path) -> Any:
    """The oracle served over loopback gRPC to callers with credentials made from a secret."""
    secret = auth.new_token()
    oracle = oracle_for(tmp_path, "search.max_trials=6", "fault_tolerance.max_consecutive_failures=2")
    port = free_port()
    address = f"127.0.0.1:{port}"
    server, _ = servicer.start(oracle, address, secret)
    channel = grpc.insecure_channel(address)
    try:
        yield oracle, kt_internals.service_grpc().OracleStub(channel), secret, port
    finally:
        channel.close()
        server.stop(grace=0.5)


def as_worker(tuner_id: str, credential: str) -> tuple[tuple[str, str], ...]:
    return ((CALLER, tuner_id), (AUTHORIZATION, f"Bearer {credential}"))


def test_a_worker_holds_a_credential_for_its_own_id_alone(served: Any, caplog: pytest.LogCaptureFixture) -> None:
    oracle, stub, secret, _ = served
    tuner0 = as_worker("tuner0", auth.worker_credential(secret, "tuner0"))
    theirs = stub.CreateTrial(messages.CreateTrialRequest(tuner_id="tuner0"), metadata=tuner0, timeout=10).trial
    # tuner1's credential, sent with tuner0's id: refused before any method runs.
    forged = as_worker("tuner0", auth.worker_credential(secret, "tuner1"))
    ending = type(theirs)()
    ending.CopyFrom(theirs)
    ending.status = kt_internals.Status.to_proto("FAILED")
    with caplog.at_level(logging.WARNING, "fmtune"):
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as info:
                stub.EndTrial(messages.EndTrialRequest(trial=ending), metadata=forged, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            request = messages.UpdateTrialRequest(trial_id=theirs.trial_id, metrics={"val_accuracy": 0.99})
            stub.UpdateTrial(request, metadata=((AUTHORIZATION, f"Bearer {auth.worker_credential(secret, 'tuner1')}"),))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED  # a worker's credential needs its id
    assert oracle.trials[theirs.trial_id].status == "RUNNING" and not oracle.control.closed()
    assert oracle.refusals.by_worker()["tuner0"] == {"unauthenticated": 3}
    refused = [r for r in caplog.records if r.levelno >= logging.WARNING and "tuner0" in r.getMessage()]
    assert len(refused) == 1  # logged once, counted thrice
    # tuner0's own credential works, and the secret's holder may read without an id.
    stub.UpdateTrial(
        messages.UpdateTrialRequest(trial_id=theirs.trial_id, metrics={"val_accuracy": 0.5}), metadata=tuner0
    )
    master = ((AUTHORIZATION, f"Bearer {secret}"),)
    assert stub.GetTrial(messages.GetTrialRequest(trial_id=theirs.trial_id), metadata=master).trial.trial_id
    stub.GetBestTrials(messages.GetBestTrialsRequest(num_trials=1), metadata=master)


def test_a_worker_finds_its_own_credential_and_never_needs_the_secret(tmp_path: Path) -> None:
    secret = auth.new_token()
    mine = auth.worker_credential(secret, "tuner3")
    assert auth.credential("tuner3", tmp_path, environ={auth.CREDENTIAL_ENV: mine}) == mine
    given = tmp_path / "credential"
    given.write_text(mine + "\n")
    assert auth.credential("tuner3", tmp_path, environ={auth.CREDENTIAL_FILE_ENV: str(given)}) == mine
    assert auth.credential("tuner3", tmp_path, environ={auth.CREDENTIAL_FILE_ENV: str(tmp_path / "no")}) is None
    # A worker that shares the coordinator's work dir derives its own from the secret there.
    assert auth.credential("tuner3", tmp_path, environ={auth.TOKEN_ENV: secret}) == mine
    assert auth.credential("tuner3", tmp_path, environ={}) is None


def test_a_kubernetes_init_container_writes_the_workers_credential_once_the_secret_exists(tmp_path: Path) -> None:
    secret_file, out = tmp_path / "secrets" / "oracle-token", tmp_path / "run" / "credential"
    with pytest.raises(SystemExit, match="no oracle token"):
        auth.main([str(secret_file), "tuner2", str(out), "0"])
    made = auth.coordinator_token(tmp_path, environ={auth.TOKEN_FILE_ENV: str(secret_file)})
    assert not (tmp_path / "oracle-token").exists()  # not in the work dir, which workers mount
    auth.main([str(secret_file), "tuner2", str(out), "0"])
    assert out.read_text() == auth.worker_credential(made, "tuner2") and out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SystemExit, match="chief"):
        auth.main([str(secret_file), "chief", str(out), "0"])


# -- 3. Keras Tuner's tuner/ values ---------------------------------------------------------------


def hyperband(tmp_path: Path) -> Any:
    return oracle_for(tmp_path, "search.algorithm=hyperband", "search.epochs=9", "search.max_trials=40")


def test_a_worker_cannot_change_hyperbands_tuner_values(tmp_path: Path) -> None:
    """Ended INVALID with tuner/epochs = 10^9 and a path for tuner/trial_id, the trial would be
    queued again as sent: the next worker fits 10^9 epochs and globs a checkpoint from the path."""
    oracle = hyperband(tmp_path)
    service = Servicer(oracle)
    trial = create(service, "tuner0")
    sent = dict(oracle.trials[trial.trial_id].hyperparameters.values)
    assert 1 <= sent["tuner/epochs"] <= 9
    forged = [
        (with_values(trial, tuner__epochs=10**9), "tuner/epochs = 1000000000 is outside 1 to 9"),
        (with_values(trial, tuner__trial_id="../../../etc"), "tuner/trial_id = '../../../etc' is no trial"),
        (with_values(trial, tuner__bracket=99), "tuner/bracket = 99 is outside"),
        (with_values(trial, tuner__round=-1), "tuner/round = -1 is outside"),
        (with_values(trial, tuner__initial_epoch=sent["tuner/epochs"] + 1), "tuner/initial_epoch"),
    ]
    for proto, reason in forged:
        assert reason in refused(lambda proto=proto: end(service, "tuner0", proto, "INVALID"))
    other = create(service, "tuner1")  # a real trial id, but not the one this trial was sent
    swapped = with_values(trial, tuner__trial_id=other.trial_id)
    assert "tuner/trial_id is the coordinator's to set" in refused(lambda: end(service, "tuner0", swapped, "INVALID"))
    assert oracle.trials[trial.trial_id].hyperparameters.values == sent and not oracle.retry_queue


def test_hyperbands_own_tuner_values_pass_through_every_round(tmp_path: Path) -> None:
    oracle = hyperband(tmp_path)
    service = Servicer(oracle)
    later = None
    for i in range(40):
        trial = create(service, "tuner0")
        values = oracle.trials[trial.trial_id].hyperparameters.values
        if values.get("tuner/round", 0) > 0:
            later = trial
            break
        report(service, "tuner0", trial.trial_id, 0.5 + i / 100)
        end(service, "tuner0", trial if i % 2 else with_values(trial))  # short path and decoded path
    assert later is not None, "Hyperband never continued a trial"
    parent = oracle.trials[later.trial_id].hyperparameters.values["tuner/trial_id"]
    assert parent in oracle.trials
    report(service, "tuner0", later.trial_id, 0.9)
    end(service, "tuner0", with_values(later))
    assert oracle.trials[later.trial_id].status == "COMPLETED"


def test_no_tuner_values_where_the_algorithm_sets_none(tmp_path: Path) -> None:
    oracle = service_oracle(tmp_path)  # random search
    service = Servicer(oracle)
    trial = create(service, "tuner0")
    forged = with_values(trial, tuner__epochs=10**9)
    assert "sets no tuner/ values" in refused(lambda: end(service, "tuner0", forged, "INVALID"))
    assert "tuner/epochs" not in oracle.trials[trial.trial_id].hyperparameters.values


# -- 4. objectives no model reaches ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("objective", "direction", "value", "reason"),
    [
        ("val_accuracy", "max", 1e300, "is not a fraction"),
        ("val_accuracy", "max", 1.5, "is not a fraction"),
        ("val_accuracy", "max", -0.1, "is not a fraction"),
        ("val_accuracy", "max", float("inf"), "infinite"),
        ("val_loss", "min", -1.0, "is negative"),
        ("val_loss", "min", float("-inf"), "infinite"),
    ],
)
def test_an_objective_no_model_can_reach_is_refused(
    tmp_path: Path, objective: str, direction: str, value: float, reason: str
) -> None:
    oracle = oracle_for(tmp_path, f"search.objective.name={objective}", f"search.objective.direction={direction}")
    service = Servicer(oracle)
    trial = create(service, "tuner0")
    assert reason in refused(lambda: report(service, "tuner0", trial.trial_id, value, objective))
    assert not oracle.trials[trial.trial_id].metrics.exists(objective)
    report(service, "tuner0", trial.trial_id, 0.25, objective)  # a value the metric can take
    assert oracle.trials[trial.trial_id].metrics.get_best_value(objective) == 0.25


def test_refused_reports_are_counted_per_worker_and_logged_once_per_kind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    oracle = service_oracle(tmp_path)
    service = Servicer(oracle)
    trial = create(service, "tuner0")
    with caplog.at_level(logging.INFO, "fmtune"):
        for value in (1e300, 2.0, -3.0, 7.0):
            refused(lambda value=value: report(service, "tuner0", trial.trial_id, value))
        refused(lambda: end(service, "tuner0", with_values(trial, units=10**9)))
    assert oracle.refusals.by_worker() == {"tuner0": {"UpdateTrial": 4, "EndTrial": 1}}
    assert oracle.refusals.total() == 5
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert len(lines) == 2 and "UpdateTrial" in lines[0] and "EndTrial" in lines[1]


# -- 5. the token file ----------------------------------------------------------------------------


def test_an_empty_token_file_left_by_a_crash_does_not_stop_the_coordinator(tmp_path: Path) -> None:
    (tmp_path / "oracle-token").write_text("")  # created, never written
    made = auth.coordinator_token(tmp_path, environ={})
    assert made and (tmp_path / "oracle-token").read_text() == made
    assert auth.coordinator_token(tmp_path, environ={}) == made


def test_a_write_that_fails_leaves_no_token_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r": Full(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        auth.coordinator_token(tmp_path, environ={})
    assert os.listdir(tmp_path) == []  # neither the token's name nor a temporary file
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    assert auth.coordinator_token(tmp_path, environ={})


def test_a_token_another_coordinator_made_meanwhile_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_link = os.link

    def racing(source: Any, target: Any) -> None:
        Path(target).write_text("the-other-coordinators")  # made between our look and our link
        real_link(source, target)

    monkeypatch.setattr(os, "link", racing)
    assert auth.coordinator_token(tmp_path, environ={}) == "the-other-coordinators"
    assert os.listdir(tmp_path) == ["oracle-token"]


def test_an_unreadable_token_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "oracle-token").mkdir()  # unreadable as a file, even by root
    with pytest.raises(auth.TokenFileError, match="cannot read the oracle token file"):
        auth.coordinator_token(tmp_path, environ={})


def test_tuner_value_checks_in_isolation() -> None:
    limits = checks.TunerLimits(max_epochs=9, brackets=3, trial_ids={"00", "01"})
    checks.tuner_values({"tuner/epochs": 3, "tuner/initial_epoch": 1, "tuner/bracket": 2, "tuner/round": 1}, limits)
    checks.tuner_values({"tuner/trial_id": "01", "tuner/epochs": 9}, limits)
    for values, reason in [
        ({"tuner/epochs": 10}, "outside 1 to 9"),
        ({"tuner/epochs": 2.5}, "not an integer"),
        ({"tuner/epochs": True}, "not an integer"),
        ({"tuner/bracket": 3}, "outside 0 to 2"),
        ({"tuner/bracket": 1, "tuner/round": 2}, "outside 0 to 1"),
        ({"tuner/trial_id": "02"}, "no trial of this search"),
        ({"tuner/other": 1}, "not one of Keras Tuner's"),
    ]:
        with pytest.raises(RequestError, match=reason):
            checks.tuner_values(values, limits)


def test_a_trial_cannot_complete_without_having_reported_its_objective(tmp_path: Path) -> None:
    """Keras Tuner fails to score such a trial half-way through ending it: left COMPLETED with no
    score and still running, which breaks the ranking of the best."""
    oracle = service_oracle(tmp_path)
    service = Servicer(oracle)
    trial = create(service, "tuner0")
    assert "cannot complete without having reported val_accuracy" in refused(lambda: end(service, "tuner0", trial))
    assert oracle.trials[trial.trial_id].status == "RUNNING" and oracle.holder(trial.trial_id) == "tuner0"
    end(service, "tuner0", trial, "FAILED")  # what an honest worker whose trial never reported sends
    assert oracle.trials[trial.trial_id].status == "FAILED"


def test_the_local_launcher_gives_each_worker_its_own_credential_and_the_secret_to_the_coordinator_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmtune.run.local import LocalCluster

    monkeypatch.setenv(auth.TOKEN_ENV, "inherited-from-the-shell")
    cluster = LocalCluster(tmp_path / "config.yaml", tmp_path, workers=2, port=free_port(), extra_env={"X": "1"})
    secret = cluster.coordinator.env[auth.TOKEN_ENV]
    assert secret != "inherited-from-the-shell" and len(secret) >= 32
    for worker in cluster.workers:
        assert not auth.SECRET_VARS - {auth.CREDENTIAL_ENV} & set(worker.env)
        assert worker.env[auth.CREDENTIAL_ENV] == auth.worker_credential(secret, worker.name)
        assert worker.env["X"] == "1"
    assert cluster.workers[0].env[auth.CREDENTIAL_ENV] != cluster.workers[1].env[auth.CREDENTIAL_ENV]


def test_workers_clients_run_a_trial_with_their_own_credentials_and_not_with_anothers(
    served: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real worker client, over loopback gRPC, finding its credential as a worker does."""
    from fmtune.tuning.oracle_client import Client, CoordinatorRefused

    oracle, _, secret, port = served
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv(auth.CREDENTIAL_ENV, auth.worker_credential(secret, "tuner0"))
    tuner0 = Client(oracle, "tuner0", timeout=10, token=lambda: auth.credential("tuner0", tmp_path))
    trial = tuner0.create_trial("tuner0")
    tuner0.update_trial(trial.trial_id, {"val_accuracy": 0.7}, step=0)
    trial.status = "COMPLETED"
    tuner0.end_trial(trial)
    assert oracle.trials[trial.trial_id].status == "COMPLETED" and oracle.best_trial_id() == trial.trial_id
    # tuner0's credential, in the hands of a process that calls itself tuner1.
    impostor = Client(oracle, "tuner1", timeout=10, token=lambda: auth.credential("tuner1", tmp_path))
    with pytest.raises(CoordinatorRefused, match=f"credential for tuner1.*{auth.CREDENTIAL_ENV}"):
        impostor.create_trial("tuner1")
    assert "tuner1" not in oracle.tuner_ids
