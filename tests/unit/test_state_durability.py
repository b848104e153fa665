"""The coordinator's state on disk under a full disk and under files planted by whoever shares its
volume (``fmtune.files``, ``fmtune.tuning.persist``, ``fmtune.tuning.reload_check``): no ended
trial is lost across a restart while writes fail, a worker hears "try again" rather than "safe",
writes never follow a planted symlink, and a restart loads no trial the coordinator did not run."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fmtune import files, run_state
from fmtune.layout import ExperimentDir
from fmtune.tuning import auth, kt_internals, persist, servicer
from fmtune.tuning.roles import free_port

from .conftest import finish, oracle_for

SIX = "search.max_trials=6"
REPO = Path(__file__).resolve().parents[2]


def failing_writes(monkeypatch: pytest.MonkeyPatch, module: Any) -> threading.Event:
    """While the returned event is set, every file ``module`` writes (through its ``replace``)
    fails as on a full disk."""
    full = threading.Event()
    real = module.replace

    def replace(path: Path, content: bytes, **kwargs: Any) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, content, **kwargs)

    monkeypatch.setattr(module, "replace", replace)
    return full


def full_disk(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """While the returned event is set, every write of the oracle's files fails as on a full disk."""
    return failing_writes(monkeypatch, persist)


@contextlib.contextmanager
def first_ended_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, score: float
) -> Iterator[tuple[Any, threading.Event, Any, Any]]:
    """(oracle, full, first, second): two trials handed out and on disk, then the disk full
    (``full`` set) before the first was ended with ``score``; the oracle's writer runs meanwhile."""
    full = full_disk(monkeypatch)
    oracle = oracle_for(tmp_path, SIX)
    oracle.start_background()
    try:
        first, second = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
        oracle.persister.written().result(timeout=10)
        full.set()
        finish(oracle, first, "tuner0", score)
        yield oracle, full, first, second
    finally:
        oracle.stop_background()


def reloaded(directory: Path) -> Any:
    oracle = oracle_for(directory, SIX)
    oracle.reload()
    return oracle


def test_a_trial_ended_while_the_disk_is_full_is_written_once_it_has_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with first_ended_on_a_full_disk(tmp_path, monkeypatch, 0.61) as (oracle, full, first, second):
        first_on_disk = oracle.persister.written()
        time.sleep(0.3)  # several failed writes
        assert not first_on_disk.done(), "a worker was told its result is safe while the disk was full"
        full.clear()
        finish(oracle, second, "tuner1", 0.72)  # a later change, written at once
        oracle.persister.written().result(timeout=10)
        first_on_disk.result(timeout=10)
    again = reloaded(tmp_path)
    assert {t: (again.trials[t].status, again.trials[t].score) for t in again.trials} == {
        first.trial_id: ("COMPLETED", pytest.approx(0.61)),
        second.trial_id: ("COMPLETED", pytest.approx(0.72)),
    }
    assert not again.ongoing_trials and not again.retry_queue
    health = oracle.persister.health
    assert health.failures >= 1 and health.error is None  # counted, and over


def test_a_waiter_hears_after_its_patience_and_a_restart_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    full = full_disk(monkeypatch)
    oracle = oracle_for(tmp_path, SIX)
    oracle.persister.patience = 0.3
    oracle.start_background()
    done, running = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
    finish(oracle, done, "tuner0", 0.66)
    oracle.persister.written().result(timeout=10)
    full.set()
    with caplog.at_level(logging.WARNING, logger="fmtune"):
        finish(oracle, running, "tuner1", 0.77)
        with pytest.raises(persist.NotWritten, match="No space left"):
            oracle.persister.written().result(timeout=10)
        health = oracle.persister.health
        assert health.failures >= 2 and "No space left" in (health.error or "")
        with pytest.raises(persist.NotWritten):  # the coordinator stops with the disk still full
            oracle.stop_background()
    failures = [r for r in caplog.records if "could not write the oracle's state" in r.getMessage()]
    assert len(failures) == 1, "a run of failed writes is logged once"
    # Restarted from what is on disk: the end never reached it, so the trial is in flight with its
    # worker (which hears UNAVAILABLE and sends its end again), not lost.
    full.clear()
    again = reloaded(tmp_path)
    assert again.trials[done.trial_id].status == "COMPLETED"
    assert again.holder(running.trial_id) == "tuner1"
    running.status = "COMPLETED"
    again.update_trial_from("tuner1", running.trial_id, {"val_accuracy": 0.77}, step=0)
    again.end_trial_from("tuner1", running)
    assert again.trials[running.trial_id].status == "COMPLETED"


def test_end_trial_answers_unavailable_while_the_disk_is_full_and_the_worker_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmtune.tuning.oracle_client import Client

    full = full_disk(monkeypatch)
    oracle = oracle_for(tmp_path, SIX)
    oracle.persister.patience = 0.2
    oracle.start_background()
    token, port = auth.new_token(), free_port()
    server, _ = servicer.start(oracle, f"127.0.0.1:{port}", token)
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    pool = futures.ThreadPoolExecutor(1)
    try:
        credential = auth.worker_credential(token, "tuner0")
        client = Client(oracle, "tuner0", timeout=60, token=lambda: credential)
        trial = client.create_trial("tuner0")
        client.update_trial(trial.trial_id, {"val_accuracy": 0.58}, step=0)
        full.set()
        trial.status = "COMPLETED"
        with pytest.raises(grpc.RpcError) as refused:  # one bare call, to see its code
            client.stub.EndTrial(
                kt_internals.service_messages().EndTrialRequest(trial=trial.to_proto()),
                metadata=client._metadata,
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        ending = pool.submit(client.end_trial, trial)
        time.sleep(1.0)
        assert not ending.done(), "the worker's end returned while its result was not on disk"
        full.clear()
        ending.result(timeout=30)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        server.stop(grace=0.5)
        oracle.stop_background()
    again = reloaded(tmp_path)
    assert again.trials[trial.trial_id].status == "COMPLETED"
    assert again.trials[trial.trial_id].score == pytest.approx(0.58)


def test_a_waiter_that_went_away_does_not_hold_up_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's call cut off by its deadline cancels its wait; the others are released all the same."""
    with first_ended_on_a_full_disk(tmp_path, monkeypatch, 0.5) as (oracle, full, _, second):
        gone, kept = oracle.persister.written(), oracle.persister.written()
        assert gone.cancel()
        full.clear()
        finish(oracle, second, "tuner1", 0.6)
        kept.result(timeout=10)
        oracle.persister.written().result(timeout=10)


# -- a real small filesystem -------------------------------------------------------------------


def small_filesystem_scenario(directory: Path) -> dict[str, Any]:
    """On a filesystem of a few hundred KiB at ``directory``: end trials while it is full, make
    room, and read back what a restarted coordinator sees. Run in a user and mount namespace."""
    oracle = oracle_for(directory, SIX)
    oracle.persister.patience = 60.0
    oracle.start_background()
    trials = [oracle.create_trial(f"tuner{i}") for i in range(4)]
    oracle.persister.written().result(timeout=30)
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill every block that is left
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    waiting = []
    for i, trial in enumerate(trials):
        finish(oracle, trial, f"tuner{i}", 0.5 + i / 10)
        waiting.append(oracle.persister.written())
    time.sleep(0.5)
    blocked = [not w.done() for w in waiting]
    failing = oracle.persister.health.error
    filler.unlink()
    acknowledged = futures.wait(waiting, timeout=30).not_done == set()
    oracle.stop_background()
    again = reloaded(directory)
    return {
        "blocked": blocked,
        "acknowledged": acknowledged,
        "error": failing,
        "trials": {t: [again.trials[t].status, again.trials[t].score] for t in again.trials},
        "ongoing": len(again.ongoing_trials),
    }


@pytest.mark.slow
def test_no_ended_trial_is_lost_on_a_real_full_filesystem(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs util-linux's unshare")
    mount = tmp_path / "small"
    mount.mkdir()
    code = (
        "import json, sys; from pathlib import Path; "
        "from tests.unit.test_state_durability import small_filesystem_scenario as s; "
        "print('RESULT ' + json.dumps(s(Path(sys.argv[1]))))"
    )
    script = f'mount -t tmpfs -o size=256k tmpfs "$1" && exec "{sys.executable}" -c "$2" "$1"'
    probe = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user namespaces here: {probe.stderr.decode().strip()}")
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", str(mount), code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert all(result["blocked"]), "an end was acknowledged while the filesystem was full"
    assert sorted(result["trials"].values()) == [["COMPLETED", pytest.approx(0.5 + i / 10)] for i in range(4)]
    assert result["ongoing"] == 0 and result["acknowledged"]
    assert "No space left" in result["error"]


# -- planted files -----------------------------------------------------------------------------


def model_repository(tmp_path: Path) -> tuple[Path, Path]:
    version = tmp_path / "models" / "fmtune" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"the exported graph")
    counter = version.parent / ".latest-version"
    counter.write_text("1")
    return version / "saved_model.pb", counter


def test_a_symlink_planted_at_the_old_temporary_name_does_not_redirect_a_write(tmp_path: Path) -> None:
    saved_model, counter = model_repository(tmp_path)
    experiment = ExperimentDir(tmp_path / "work" / "exp")
    experiment.path.mkdir(parents=True)
    (experiment.path / ".state.json.tmp").symlink_to(saved_model)
    state = run_state.RunState(experiment="exp", config_digest="d", max_trials=3, objective="val_accuracy")
    run_state.save(state, experiment.path)
    assert saved_model.read_bytes() == b"the exported graph"
    assert run_state.load(experiment.path) == state

    oracle = oracle_for(tmp_path / "oracle", SIX)
    oracle.start_background()
    try:
        oracle.state_dir.mkdir(parents=True, exist_ok=True)
        (oracle.state_dir / ".oracle.json.tmp").symlink_to(counter)
        finish(oracle, oracle.create_trial("tuner0"), "tuner0", 0.5)
        oracle.persister.written().result(timeout=10)
    finally:
        oracle.stop_background()
    assert counter.read_text() == "1"
    assert json.loads(oracle.state_file.read_bytes())["end_order"] == ["0"]


def test_a_write_refuses_a_file_or_symlink_already_at_its_temporary_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved_model, _ = model_repository(tmp_path)
    target = tmp_path / "state.json"
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: "0" * (2 * n))  # a name someone guessed
    files.temporary_name(target).symlink_to(saved_model)
    with pytest.raises(FileExistsError):
        files.replace(target, b"{}")
    assert saved_model.read_bytes() == b"the exported graph" and not target.exists()


@given(st.text(st.characters(exclude_characters="/\0"), min_size=1, max_size=60).filter(lambda s: s not in (".", "..")))
def test_every_temporary_name_leads_back_to_its_target(name: str) -> None:
    tmp = files.temporary_name(Path("/x") / name)
    assert files.target_of(tmp) == Path("/x") / name
    assert tmp.name != files.temporary_name(Path("/x") / name).name


def test_recover_drops_a_planted_symlink_unread(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": 1}')
    directory = tmp_path / "search"
    directory.mkdir()
    (directory / ".oracle.json.0123456789abcdef.tmp").symlink_to(outside)
    files.recover(directory)
    assert not (directory / "oracle.json").exists() and not list(directory.iterdir())
    assert outside.read_text() == '{"secret": 1}'


def plant(directory: Path, trial_id: str, state: dict[str, Any]) -> None:
    folder = directory / "search" / f"trial_{trial_id}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trial.json").write_text(json.dumps(state))


def test_a_restart_refuses_trials_the_coordinator_did_not_run_or_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    oracle = oracle_for(tmp_path, SIX)
    ran = [oracle.create_trial(f"tuner{i}") for i in range(3)]
    for i, trial in enumerate(ran):
        finish(oracle, trial, f"tuner{i}", 0.6 + i / 100)
    running = oracle.create_trial("tuner3")
    best = ran[2]
    # A worker sharing the directory plants a trial never handed out, raises a real one's score
    # (its metrics to match), and puts a value outside the space into another.
    planted = json.loads(oracle.trial_file(best.trial_id).read_text())
    planted["trial_id"], planted["score"] = "99", 0.9999
    planted["metrics"]["metrics"]["val_accuracy"]["observations"][0]["value"] = [0.9999]
    plant(tmp_path, "99", planted)
    raised = json.loads(oracle.trial_file(ran[0].trial_id).read_text())
    raised["score"] = 0.98
    raised["metrics"]["metrics"]["val_accuracy"]["observations"][0]["value"] = [0.98]
    plant(tmp_path, ran[0].trial_id, raised)
    outside = json.loads(oracle.trial_file(ran[1].trial_id).read_text())
    outside["hyperparameters"]["values"]["units"] = 4096
    plant(tmp_path, ran[1].trial_id, outside)
    impossible = json.loads(oracle.trial_file(running.trial_id).read_text())
    impossible["metrics"]["metrics"]["val_accuracy"] = {
        "direction": "max",
        "observations": [{"value": [7.5], "step": 0}],
    }
    plant(tmp_path, running.trial_id, impossible)

    with caplog.at_level(logging.WARNING, logger="fmtune"):
        again = reloaded(tmp_path)
    assert "99" not in again.trials
    assert again.best_trial_id() == best.trial_id
    assert [t.trial_id for t in again.get_best_trials(1)] == [best.trial_id]
    for refused in (ran[0], ran[1], running):
        assert again.trials[refused.trial_id].status == "INVALID" and again.trials[refused.trial_id].score is None
    assert again.holder(running.trial_id) is None and running.trial_id not in again.retry_queue
    reasons = "\n".join(r.getMessage() for r in caplog.records if "refused trial" in r.getMessage())
    assert "trial 99" in reasons and "never handed it out" in reasons
    assert "not the" in reasons and "recorded" in reasons  # the raised score
    assert "values are not those the coordinator recorded" in reasons
    assert "val_accuracy = 7.5 is not a fraction" in reasons
    # A new trial takes the next id, as if nothing had been planted.
    assert again.create_trial("tuner4").trial_id == "4"


def test_a_clean_restart_refuses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    oracle = oracle_for(tmp_path, SIX)
    oracle.start_background()
    try:
        for i in range(3):
            finish(oracle, oracle.create_trial(f"tuner{i}"), f"tuner{i}", 0.5 + i / 10)
        running = oracle.create_trial("tuner3")
        oracle.persister.written().result(timeout=10)
    finally:
        oracle.stop_background()
    with caplog.at_level(logging.WARNING, logger="fmtune"):
        again = reloaded(tmp_path)
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
    assert sorted(again.trials) == ["0", "1", "2", running.trial_id]
    assert again.holder(running.trial_id) == "tuner3"
    assert again.best_trial_id() == "2"


def test_state_json_says_when_the_coordinator_cannot_write_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmtune import config
    from fmtune.run import state_writer
    from fmtune.run.state_writer import StateWriter

    settings = ["search.algorithm=random", "search.asha.enabled=false", "budget_minutes=null", f"workdir={tmp_path}"]
    cfg = config.load("quick", None, settings, environ={})
    oracle = oracle_for(tmp_path / "oracle", SIX)
    writer = StateWriter(cfg, oracle, None)
    full = full_disk(monkeypatch)
    failing_state = failing_writes(monkeypatch, state_writer)
    oracle.start_background()
    try:
        trial = oracle.create_trial("tuner0")
        full.set()
        finish(oracle, trial, "tuner0", 0.5)
        deadline = time.monotonic() + 10
        while oracle.persister.health.failures < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        writer.update(force=True)
        state = run_state.load(cfg.experiment_dir)
        assert state is not None and state.state_write_failures >= 2
        assert "No space left" in (state.state_write_error or "")
        failing_state.set()  # state.json itself cannot be written either: counted, no exception
        writer.update(force=True)
        full.clear()
        failing_state.clear()
        oracle.persister.written().result(timeout=10)
        writer.update(force=True)
        state = run_state.load(cfg.experiment_dir)
        assert state is not None and state.state_write_error is None
        assert state.state_write_failures >= 3 and state.trials_finished == 1
    finally:
        oracle.stop_background()


def test_the_coordinators_own_files_can_be_kept_apart_from_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmtune import layout

    workdir, apart = tmp_path / "runs", tmp_path / "state"
    monkeypatch.setenv(layout.STATE_DIR_ENV, str(apart))
    experiment = ExperimentDir(workdir / "exp")
    own = [experiment.config, experiment.budget, experiment.token, experiment.oracle, experiment.state]
    assert all(path.parent == apart / "exp" for path in [*own, experiment.results, experiment.tracking])
    assert experiment.worker("tuner0").is_relative_to(workdir / "exp")
    assert experiment.tensorboard.is_relative_to(workdir / "exp")
    run_state.save(
        run_state.RunState(experiment="exp", config_digest="d", max_trials=1, objective="x"), experiment.path
    )
    assert (apart / "exp" / "state.json").is_file() and not (workdir / "exp" / "state.json").exists()
    assert layout.experiments(workdir, layout.STATE) == [workdir / "exp"]
    assert layout.experiments(workdir / "exp", layout.STATE) == [workdir / "exp"]
    monkeypatch.delenv(layout.STATE_DIR_ENV)
    assert ExperimentDir(workdir / "exp").state == workdir / "exp" / "state.json"  # unset: all in one place


def test_an_upgrade_copies_the_coordinators_files_left_beside_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmtune import layout

    legacy = tmp_path / "runs" / "exp"
    (legacy / "oracle" / "search" / "trial_0").mkdir(parents=True)
    (legacy / "oracle" / "search" / "oracle.json").write_text("{}")
    (legacy / "oracle" / "search" / "trial_0" / "trial.json").write_text('{"trial_id": "0"}')
    (legacy / "oracle" / "search" / "trial_9").symlink_to(tmp_path)  # planted: not copied
    (legacy / "state.json").write_text('{"old": true}')
    (legacy / "config.yaml").write_text("old: true")
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (legacy / "results.json").symlink_to(outside)
    monkeypatch.setenv(layout.STATE_DIR_ENV, str(tmp_path / "state"))
    experiment = ExperimentDir(legacy)
    experiment.config.parent.mkdir(parents=True)
    experiment.config.write_text("new: true")  # published by this start already
    assert layout.adopt_own_files(experiment) == [layout.ORACLE, layout.STATE]
    assert experiment.config.read_text() == "new: true"
    assert experiment.state.read_text() == '{"old": true}'
    assert (experiment.oracle / "search" / "trial_0" / "trial.json").is_file()
    assert not (experiment.oracle / "search" / "trial_9").exists()
    assert not experiment.results.exists() and not experiment.results.is_symlink()
    assert layout.adopt_own_files(experiment) == []  # once
