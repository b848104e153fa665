"""The oracle's files (``fmtune.tuning.persist`` and ``fmtune.tuning.oracle_state``): writes
coalesced behind the calls, a write cut short by a kill, trial files as Keras Tuner writes them
(NaN included), and a restarted coordinator resuming from them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fmtune.tuning.kt_internals import Trial
from fmtune.tuning.persist import trial_json

from .conftest import Clock, bayesian_oracle, finish, run_trial
from .conftest import short_lease_oracle as oracle_for


def test_persister_writes_behind_and_a_restart_reads_it_back(tmp_path: Path) -> None:
    oracle = bayesian_oracle(tmp_path)
    oracle.start_background()
    try:
        done = [run_trial(oracle, f"tuner{i}") for i in range(3)]
        oracle.persister.written().result(timeout=10)
        trial_file = oracle.trial_file(done[-1].trial_id)
        assert trial_file.exists()
    finally:
        oracle.stop_background()
    again = bayesian_oracle(tmp_path)
    again.reload()
    assert sorted(again.trials) == sorted(t.trial_id for t in done)
    assert all(again.trials[t.trial_id].score == pytest.approx(t.score) for t in done)
    assert again.end_order == [t.trial_id for t in done]


def test_reports_are_written_at_once_when_idle_and_deferred_behind_creates_and_ends(tmp_path: Path) -> None:
    oracle = bayesian_oracle(tmp_path)
    trial = oracle.create_trial("tuner0")
    trial_file = oracle.trial_file(trial.trial_id)

    def reported_steps() -> list[Any]:
        try:
            metrics = json.loads(trial_file.read_text())["metrics"]["metrics"]
        except FileNotFoundError:  # not written yet
            return []
        return [o["step"] for o in metrics.get("score", {}).get("observations", [])]

    persister = oracle.persister
    oracle.start_background()
    try:
        # A lazy write is never due by the clock here: the report can only be written because
        # nothing else waits to be, however slow the machine.
        persister._lazy_at = time.monotonic() + 3600
        oracle.update_trial_from("tuner0", trial.trial_id, {"score": -0.5}, step=0)
        deadline = time.monotonic() + 60
        while reported_steps() != [0]:
            assert time.monotonic() < deadline, "an idle persister did not write the report"
            time.sleep(0.01)
    finally:
        oracle.stop_background()
    # The persister's choices, step by step: a report just after a lazy write, beside a create.
    persister._lazy_at = time.monotonic() + 3600  # the last lazy write was just now, for this test's length
    oracle.trials[trial.trial_id].metrics.update("score", -0.4, step=1)
    persister.mark(trial.trial_id, lazy=True)
    persister.mark()  # the oracle's own state, which a waiting create needs
    persister.flush(everything=False)
    assert reported_steps() == [0]  # deferred behind the create
    persister.flush(everything=False)  # nothing else left to write: now
    assert reported_steps() == [0, 1]


def test_a_write_cut_short_is_finished_or_dropped_on_restart(tmp_path: Path) -> None:
    oracle = bayesian_oracle(tmp_path)
    oracle.start_background()
    try:
        done = [run_trial(oracle, f"tuner{i}") for i in range(3)]
    finally:
        oracle.stop_background()
    # Killed after removing the old files and before renaming the new ones in: only the
    # complete temporary files are there. A temporary file beside its target was cut short.
    first, second = (oracle.trial_file(t.trial_id) for t in done[:2])
    oracle_file = oracle.state_file
    for path in (first, oracle_file):
        path.rename(path.with_name(f".{path.name}.tmp"))
    torn = second.with_name(f".{second.name}.tmp")
    torn.write_text('{"trial_id": ')
    again = bayesian_oracle(tmp_path)
    again.reload()
    assert sorted(again.trials) == sorted(t.trial_id for t in done)
    assert again.end_order == [t.trial_id for t in done]
    assert first.exists() and oracle_file.exists() and not torn.exists()
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.filterwarnings("ignore:All-NaN axis")  # Keras Tuner scoring a NaN-only history
def test_trial_files_read_back_as_keras_tuner_wrote_them_nan_included(tmp_path: Path) -> None:
    oracle = bayesian_oracle(tmp_path)
    trial = run_trial(oracle, "tuner0")
    assert json.loads(trial_json(oracle.trial_state(trial))) == json.loads(json.dumps(trial.get_state()))
    diverged = oracle.create_trial("tuner0")
    oracle.update_trial_from("tuner0", diverged.trial_id, {"score": float("nan")})
    text = trial_json(oracle.trial_state(oracle.trials[diverged.trial_id])).decode()
    assert "NaN" in text  # not orjson's null, which Keras Tuner would read back as a missing value
    values = json.loads(text)["metrics"]["metrics"]["score"]["observations"][0]["value"]
    assert np.isnan(values[0])


def test_values_a_worker_added_reach_the_trial_file(tmp_path: Path) -> None:
    oracle = bayesian_oracle(tmp_path)
    trial = oracle.create_trial("tuner0")
    oracle.update_trial_from("tuner0", trial.trial_id, {"score": -0.5})
    ended = Trial(oracle.trials[trial.trial_id].hyperparameters.copy(), trial_id=trial.trial_id)
    ended.hyperparameters.Int("extra", 1, 4)
    ended.status = "COMPLETED"
    oracle.end_trial_from("tuner0", ended)
    saved = json.loads(oracle.trial_file(trial.trial_id).read_text())
    assert saved["hyperparameters"]["values"]["extra"] == 1


def test_restart_after_the_last_trial_does_not_run_it_again(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path)
    for i in range(3):
        finish(oracle, oracle.create_trial(f"tuner{i % 2}"), f"tuner{i % 2}", 0.5 + i / 10)
    resumed = oracle_for(tmp_path)
    resumed.reload()
    assert not resumed.ongoing_trials and not resumed.retry_queue
    assert resumed.search_over()


def test_restart_keeps_trials_in_flight_with_their_workers(tmp_path: Path) -> None:
    oracle = oracle_for(tmp_path, "fault_tolerance.lease_seconds=30", "fault_tolerance.heartbeat_seconds=1")
    done = oracle.create_trial("tuner0")
    finish(oracle, done, "tuner0", 0.7)
    running = oracle.create_trial("tuner1")
    resumed = oracle_for(tmp_path, "fault_tolerance.lease_seconds=30", "fault_tolerance.heartbeat_seconds=1")
    resumed.reload()
    assert resumed.holder(running.trial_id) == "tuner1" and not resumed.retry_queue
    assert resumed.update_trial_from("tuner1", running.trial_id, {"val_accuracy": 0.6}).status == "RUNNING"
    assert resumed.trials[done.trial_id].status == "COMPLETED"


def test_the_record_survives_a_restart_and_an_abort_is_retried(tmp_path: Path) -> None:
    clock = Clock()
    oracle = oracle_for(tmp_path, "fault_tolerance.lease_seconds=30", clock=clock)
    trial = oracle.create_trial("tuner0")
    clock.now += 31  # tuner0 falls silent: its trial goes back to the queue
    assert oracle.reap() == ["tuner0"]
    assert oracle.create_trial("tuner1").trial_id == trial.trial_id
    clock.now += 4
    oracle.update_trial_from("tuner1", trial.trial_id, {"val_accuracy": 0.5}, step=0)
    oracle.abort("out of patience")
    resumed = oracle_for(tmp_path, "fault_tolerance.lease_seconds=30", clock=clock)
    resumed.reload()
    assert resumed.control.abort_reason is None  # the next start tries again
    attempt = resumed.book.attempt(trial.trial_id)
    assert attempt.worker == "tuner1" and attempt.started_at == 1031.0 and attempt.ended_at is None
    assert attempt.epoch_seconds == [4.0] and attempt.reported_at == 1035.0
    assert attempt.requeues == [("tuner0", 1031.0)]  # a tuple again, as JSON keeps lists
    assert resumed.holder(trial.trial_id) == "tuner1"
    assert resumed.create_trial("tuner2").status == "RUNNING"


def test_a_search_stopped_by_the_worker_wait_goes_on_when_the_next_start_sees_workers(tmp_path: Path) -> None:
    """Workers Pending past the worker wait (a GPU node scaling up, a CPU request no node has) stop
    the search; the restarted coordinator must not find it over for ever, whatever the next start
    changed (an upgrade of workers.resources leaves the experiment's config as it was)."""
    from fmtune.run.coordinator import serve_oracle
    from fmtune.tuning.roles import Role, free_port

    waits = "fault_tolerance.worker_wait_seconds=0.3"
    first = oracle_for(tmp_path, waits)
    serve_oracle(first, Role("chief", "127.0.0.1", free_port()), token="t")  # no worker ever comes
    assert first.control.abort_reason is not None and first.search_over()
    again = oracle_for(tmp_path, waits)
    again.reload()
    assert again.control.abort_reason is None and not again.search_over()
    for i in range(3):  # now the workers run
        finish(again, again.create_trial(f"tuner{i}"), f"tuner{i}", 0.5 + i / 10)
    assert again.search_over() and again.control.abort_reason is None
    assert again.create_trial("tuner0").status == "STOPPED"


def test_after_a_failure_streak_the_next_start_runs_trials_and_stops_again_if_they_still_fail(tmp_path: Path) -> None:
    settings = ("fault_tolerance.max_retries_per_trial=0", "fault_tolerance.max_consecutive_failures=2")
    oracle = oracle_for(tmp_path, *settings, "search.max_trials=10")

    def fail(target: Any, caller: str) -> None:
        trial = target.create_trial(caller)
        trial.status, trial.message = "FAILED", "Traceback...\nMemoryError: out of memory"
        target.end_trial_from(caller, trial)

    fail(oracle, "tuner0")
    fail(oracle, "tuner0")
    assert oracle.control.abort_reason is not None
    fixed = oracle_for(tmp_path, *settings, "search.max_trials=10")  # e.g. more memory for the workers
    fixed.reload()
    finish(fixed, fixed.create_trial("tuner0"), "tuner0", 0.7)
    assert fixed.control.abort_reason is None and not fixed.search_over()
    still = oracle_for(tmp_path, *settings, "search.max_trials=10")  # a cause that is not gone
    still.reload()
    fail(still, "tuner0")
    fail(still, "tuner0")
    assert still.control.abort_reason == "2 trials failed in a row; the last one: MemoryError: out of memory"
