"""The oracle's record beside Keras Tuner's trials (``fmtune.tuning.bookkeeping``): one ``Book``
on a clock moved by hand, without an oracle."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import keras_tuner as kt
import pytest

from fmtune.trials import Epoch, Requeue, TrialRecord
from fmtune.tuning.bookkeeping import Attempt, Book
from fmtune.tuning.kt_internals import Trial
from fmtune.tuning.persist import oracle_json

from .conftest import Clock

ACCURACY = kt.Objective("val_accuracy", "max")


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def ended(book: Book, trial_id: str, status: str, score: float | None) -> Trial:
    trial = Trial(kt.HyperParameters(), trial_id=trial_id, status=status)
    trial.score = score
    book.ended(trial)
    return trial


def conditional_space() -> kt.HyperParameters:
    """``layers`` is 1, so ``units_1`` (only for 2 layers) is inactive; Hyperband's epochs beside."""
    hp = kt.HyperParameters()
    hp.Choice("layers", [1, 2])
    with hp.conditional_scope("layers", [2]):
        hp.Int("units_1", 8, 64)
    hp.values["units_1"] = 16  # a value a worker sent, that shaped no model
    hp.values["tuner/epochs"] = 4
    return hp


def a_run(clock: Clock, book: Book) -> None:
    """Trial 7: started on tuner9, taken back at 1010, run by tuner0 from 1010 (epochs of 2 s and
    3 s), ended at 1016."""
    book.started("7", "tuner9", {"layers": 1})
    clock.now += 10
    book.requeued("7")
    book.started("7", "tuner0", {"layers": 1})
    clock.now += 2
    book.reported("7")
    clock.now += 3
    book.reported("7")
    clock.now += 1


def test_a_trials_runs_are_timed_on_the_books_clock() -> None:
    clock = Clock()
    book = Book(ACCURACY, clock, rung=lambda epochs: None)
    book.started("3", "tuner0", {"units": 8})
    clock.now += 5
    book.reported("3")  # the first epoch counts from the start
    clock.now += 2.5
    book.reported("3")  # the next from the last report
    first = book.attempt("3")
    assert (first.worker, first.started_at, first.reported_at, first.epoch_seconds) == (
        "tuner0",
        1000.0,
        1007.5,
        [5.0, 2.5],
    )
    assert book.later_epochs("3") == [2.5]  # without the first, which also builds the model
    assert book.later_epochs("9") == [] and "9" not in book.attempts
    clock.now += 1
    book.requeued("3")  # tuner0 fell silent: the epochs it ran no longer count
    assert (first.epoch_seconds, first.reported_at, first.requeues) == ([], None, [("tuner0", 1008.5)])
    clock.now += 0.5
    book.started("3", "tuner1", {"units": 8})
    clock.now += 4
    book.reported("3")
    book.stopped("3", "Asha", 0, "early by Asha")
    clock.now += 1
    ended(book, "3", "STOPPED", 0.9)
    assert book.attempt("3") == Attempt(
        worker="tuner1",
        started_at=1009.0,
        ended_at=1014.0,
        reported_at=1013.0,
        epoch_seconds=[4.0],
        stopped_by="Asha",
        requeues=[("tuner0", 1008.5)],
    )
    assert book.finished == {"3"}


def test_the_best_so_far_counts_completed_trials_only_and_the_first_of_equals() -> None:
    book = Book(ACCURACY, Clock(), rung=lambda epochs: None)
    bests = []
    for trial_id, status, score in [
        ("0", "COMPLETED", 0.7),
        ("1", "STOPPED", 0.95),  # from fewer epochs: not a best
        ("2", "COMPLETED", 0.6),
        ("3", "COMPLETED", 0.8),
        ("4", "COMPLETED", 0.8),  # equal: the first keeps it
        ("5", "FAILED", None),
        ("6", "INVALID", None),  # will run again: not finished
    ]:
        ended(book, trial_id, status, score)
        bests.append((book.best_score, book.best_trial))
    assert bests == [(0.7, "0"), (0.7, "0"), (0.7, "0"), (0.8, "3"), (0.8, "3"), (0.8, "3"), (0.8, "3")]
    assert book.finished == {"0", "1", "2", "3", "4", "5"}
    book.note(Trial(kt.HyperParameters(), trial_id="5", status="IDLE"))  # back to the queue
    assert book.finished == {"0", "1", "2", "3", "4"}
    losses = Book(kt.Objective("val_loss", "min"), Clock(), rung=lambda epochs: None)
    for trial_id, score in [("0", 0.3), ("1", 0.4), ("2", 0.2)]:
        ended(losses, trial_id, "COMPLETED", score)
    assert (losses.best_score, losses.best_trial) == (0.2, "2")


@pytest.mark.filterwarnings("ignore:All-NaN")  # Keras Tuner's best value of a NaN-only history
def test_a_frozen_trial_holds_every_field_and_no_non_finite_number() -> None:
    clock = Clock()
    book = Book(ACCURACY, clock, rung=lambda epochs: 10 * epochs)
    a_run(clock, book)
    trial = Trial(conditional_space(), trial_id="7", status="COMPLETED")
    for step, (accuracy, loss) in enumerate([(0.5, 0.9), (0.75, float("nan"))]):
        trial.metrics.update("val_accuracy", accuracy, step=step)
        trial.metrics.update("loss", loss, step=step)
    trial.score, trial.best_step = 0.75, 1
    trial.message = "x" * 4000 + "ValueError: boom"
    book.ended(trial)
    copied = book.copy(trial)
    book.reported("7")  # after the copy: not in it
    assert book.freeze(copied) == TrialRecord(
        trial_id="7",
        status="COMPLETED",
        worker="tuner0",
        hyperparameters={"layers": 1, "tuner/epochs": 4},  # units_1 shaped no model
        score=0.75,
        best_epoch=1,
        history=[
            Epoch(epoch=0, metrics={"val_accuracy": 0.5, "loss": 0.9}),
            Epoch(epoch=1, metrics={"val_accuracy": 0.75, "loss": None}),
        ],
        epoch_seconds=[2.0, 3.0],
        started_at=at(1010.0),
        ended_at=at(1016.0),
        seconds=6.0,
        rung=20,
        stopped_by=None,
        requeues=[Requeue(worker="tuner9", at=at(1010.0))],
        message="x" * 3984 + "ValueError: boom",  # the traceback's end
    )
    queued = book.freeze(book.copy(trial, status="QUEUED", holder="tuner5"))
    assert (queued.status, queued.worker) == ("QUEUED", "tuner5")

    diverged = Trial(kt.HyperParameters(), trial_id="8", status="COMPLETED")  # no record of its run
    diverged.metrics.update("val_accuracy", float("nan"), step=0)
    diverged.metrics.update("loss", float("inf"), step=0)
    diverged.score = float("nan")
    frozen = book.freeze(book.copy(diverged))
    assert frozen.score is None and frozen.history == [Epoch(epoch=0, metrics={"val_accuracy": None, "loss": None})]
    assert (frozen.worker, frozen.started_at, frozen.ended_at, frozen.seconds) == (None, None, None, None)
    assert (frozen.epoch_seconds, frozen.requeues, frozen.rung, frozen.message) == ([], [], 10, None)


def test_the_record_round_trips_through_the_saved_state() -> None:
    clock = Clock()
    book = Book(ACCURACY, clock, rung=lambda epochs: None)
    a_run(clock, book)
    book.stopped("7", "budget", 1, "by the coordinator")
    ended(book, "7", "COMPLETED", 0.75)
    book.started("8", "tuner1", {})
    state = json.loads(oracle_json(book.get_state()))  # as oracle.json keeps it
    assert state == {
        "7": {
            "worker": "tuner0",
            "started_at": 1010.0,
            "ended_at": 1016.0,
            "reported_at": 1015.0,
            "epoch_seconds": [2.0, 3.0],
            "stopped_by": "budget",
            "requeues": [["tuner9", 1010.0]],
        },
        "8": {
            "worker": "tuner1",
            "started_at": 1016.0,
            "ended_at": None,
            "reported_at": None,
            "epoch_seconds": [],
            "stopped_by": None,
            "requeues": [],
        },
    }
    restored = Book(ACCURACY, clock, rung=lambda epochs: None)
    restored.set_state(state)
    assert restored.attempts == book.attempts  # requeues are tuples again
    assert restored.attempt("7").requeues == [("tuner9", 1010.0)]
    # Only the record: what finished and the best are counted again from the trials (note).
    assert restored.finished == set() and restored.best_score is None


def test_each_end_is_logged_with_the_progress_and_the_best(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    book = Book(ACCURACY, clock, rung=lambda epochs: None)
    with caplog.at_level(logging.INFO, "fmtune"):
        a_run(clock, book)
        book.log_end(ended(book, "7", "COMPLETED", 0.75), max_trials=3)
        book.started("8", "tuner1", {})
        clock.now += 2
        book.log_end(ended(book, "8", "STOPPED", 0.9), max_trials=3)
        failed = Trial(kt.HyperParameters(), trial_id="9", status="FAILED", message="Traceback...\nOSError: disk")
        book.ended(failed)
        book.log_end(failed, max_trials=None)
        book.log_end(ended(book, "10", "INVALID", None), max_trials=3)
    assert caplog.messages == [
        "trial 7 started on tuner9: layers=1",
        "trial 7 started on tuner0: layers=1",
        "trial 1/3 done: val_accuracy=0.7500 (best 0.7500) [trial 7 on tuner0, 6s]",
        "trial 8 started on tuner1: ",
        "trial 2/3 stopped: stopped early (best 0.7500) [trial 8 on tuner1, 2s]",
        "trial 3/? failed: OSError: disk (best 0.7500) [trial 9 on None, 0s]",
        "trial 10 failed and will be retried [trial 10 on None, 0s]",
    ]
