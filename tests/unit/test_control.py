"""The one answer to "is the search over?" (``fmtune.tuning.control``), on plain numbers: trials
running, trials made, trials queued for a retry, workers waiting for an answer."""

from __future__ import annotations

import logging

import pytest

from fmtune.tuning.control import SearchControl


def test_the_search_is_closed_by_an_abort_or_when_the_run_says_time_is_up() -> None:
    time_left = [True]
    control = SearchControl(lambda: 3, lambda: time_left[0])
    assert not control.closed()
    time_left[0] = False
    assert control.closed()
    time_left[0] = True
    assert not control.closed()  # asked at every call
    control.abort("boom")
    assert control.closed()
    assert not SearchControl(lambda: 3).closed()  # open unless told otherwise


def test_the_search_is_full_once_max_trials_were_made_and_none_waits_for_a_retry() -> None:
    control = SearchControl(lambda: 3)
    cases = [(2, 0), (3, 0), (3, 1), (4, 0), (0, 0)]  # (trials, queued)
    assert [control.full(trials, queued) for trials, queued in cases] == [False, True, False, True, False]
    assert not SearchControl(lambda: None).full(10**6, 0)  # no limit: never full


def test_a_new_trial_may_be_made_while_open_below_the_limit_and_with_no_retry_waiting() -> None:
    limit: list[int | None] = [3]
    control = SearchControl(lambda: limit[0])
    cases = [(0, 0), (2, 0), (3, 0), (2, 1)]  # (trials, queued): a queued trial goes out first
    assert [control.may_create(trials, queued) for trials, queued in cases] == [True, True, False, False]
    limit[0] = 5  # the oracle's max_trials, read at every call
    assert control.may_create(3, 0)
    limit[0] = None
    assert control.may_create(10**6, 0) and not control.may_create(10**6, 1)
    control.abort("boom")
    assert not control.may_create(0, 0)
    closed = SearchControl(lambda: 3, lambda: False)
    assert not closed.may_create(0, 0)


def test_no_trial_starts_once_starts_are_closed_though_the_search_is_still_open() -> None:
    starts = [True]
    control = SearchControl(lambda: 3, starts_open=lambda: starts[0])
    assert control.may_start() and control.may_create(0, 0)
    starts[0] = False  # one would not end an epoch before the search closes
    assert not control.may_start() and not control.may_create(0, 0)
    assert not control.closed()  # the running trials go on
    assert not SearchControl(lambda: 3, lambda: False).may_start()  # nor after it closed


def test_the_search_is_over_only_when_no_trial_runs_and_none_will_be_handed_out() -> None:
    control = SearchControl(lambda: 3)
    assert control.over(running=0, trials=3, queued=0)  # full
    assert not control.over(running=1, trials=3, queued=0)  # one still runs
    assert not control.over(running=0, trials=3, queued=1)  # one waits to run again
    assert not control.over(running=0, trials=2, queued=0)  # one more to make
    control.stop_sent = True  # a worker was told the search is over: the others have left too
    assert control.over(running=0, trials=2, queued=1)
    assert not control.over(running=1, trials=2, queued=0)
    aborted = SearchControl(lambda: 3)
    aborted.abort("boom")
    assert aborted.over(running=0, trials=0, queued=2)
    assert not aborted.over(running=2, trials=0, queued=0)  # the running trials end first
    assert not SearchControl(lambda: None).over(running=0, trials=10**6, queued=0)


def test_serving_is_done_once_the_search_is_over_and_no_worker_waits_for_an_answer() -> None:
    control = SearchControl(lambda: 3)
    assert control.done(running=0, trials=3, queued=0, waiting=0)
    assert not control.done(running=0, trials=3, queued=0, waiting=1)  # still to be told
    assert not control.done(running=1, trials=3, queued=0, waiting=0)
    assert not control.done(running=0, trials=2, queued=0, waiting=0)


def test_an_abort_is_reported_once_and_keeps_its_first_reason(caplog: pytest.LogCaptureFixture) -> None:
    control = SearchControl(lambda: 3)
    with caplog.at_level(logging.ERROR, "fmtune"):
        assert control.abort("2 trials failed in a row") is True
        assert control.abort("no worker has asked for a trial") is False
    assert control.abort_reason == "2 trials failed in a row"
    assert caplog.messages == ["stopping the search: 2 trials failed in a row"]
