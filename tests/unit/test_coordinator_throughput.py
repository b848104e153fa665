"""The coordinator's throughput machinery: background suggestions (a create waiting for one
over a loopback gRPC server holds up no other call), Keras Tuner's sampler and metric numbers
computed faster, and a lock that survives exceptions. The write-behind persister is in
test_persist.py, the servicer's encoding in test_servicer.py."""

from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import keras_tuner as kt
import numpy as np
import pytest

from fmtune.tuning import kt_internals
from fmtune.tuning.kt_internals import locked
from fmtune.tuning.oracle import FmtuneOracle
from fmtune.tuning.suggest import GPSuggester, Observations, SuggestionQueue

from .conftest import bayesian_oracle, run_trial


def test_suggestions_approach_the_optimum_and_avoid_running_points() -> None:
    rng = np.random.RandomState(0)
    x = rng.uniform(size=(30, 2))
    y = ((x - [0.7, 0.2]) ** 2).sum(axis=1)  # minimised
    suggester = GPSuggester(alpha=1e-4, seed=0)
    picks = suggester.picks(Observations(x, y, np.empty((0, 2))), [])
    first, second = next(picks), next(picks)
    assert np.all((first >= 0) & (first <= 1))
    assert np.linalg.norm(first - [0.7, 0.2]) < 0.1
    assert not np.allclose(first, second)  # the first pick counts as running when the second is chosen


def test_bayesian_oracle_searches_with_background_suggestions(tmp_path: Path) -> None:
    oracle = bayesian_oracle(tmp_path, max_trials=10)
    oracle.start_background()
    try:
        trials = [run_trial(oracle, "tuner0") for _ in range(10)]
    finally:
        oracle.stop_background()
    assert [t.status for t in trials] == ["COMPLETED"] * 10
    assert oracle.create_trial("tuner0").status == "STOPPED"
    best = max(t.score for t in trials)
    assert best > max(t.score for t in trials[:3]) + 0.05  # the GP's picks beat the random start


class GatedSuggester(GPSuggester):
    """A suggester whose fits wait until the test lets them through, and say when one began."""

    def __init__(self, alpha: float, seed: int):
        super().__init__(alpha, seed)
        self.fitting, self.go_on = threading.Event(), threading.Event()

    def fit(self, x: np.ndarray, y: np.ndarray) -> Any:
        self.fitting.set()
        if not self.go_on.wait(120):
            raise RuntimeError("the test never let the fit through")
        return super().fit(x, y)


class WatchedQueue(SuggestionQueue):
    """A suggestion queue that says when a create has begun to wait on it."""

    def __init__(self, suggester: GPSuggester, observe: Any):
        super().__init__(suggester, observe)
        self.asked = threading.Event()

    def take(self, completed: int, running: int, timeout: float) -> np.ndarray | None:
        self.asked.set()
        return super().take(completed, running, timeout)


def test_reports_are_answered_while_a_create_waits_for_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a loopback gRPC server, with the workers' own client (token and caller id in the call's
    metadata): a create blocked on a suggestion holds up neither reports nor heartbeats, and a
    refused report is mapped to the client's error. Ordered by events, not by the clock."""
    from fmtune.tuning import auth, bayesian, servicer
    from fmtune.tuning.oracle_client import Client, CoordinatorRefused
    from fmtune.tuning.roles import free_port

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setattr(bayesian, "SUGGESTION_WAIT_SECONDS", 600.0)  # the create waits for the test alone
    oracle = bayesian_oracle(tmp_path)
    suggester = GatedSuggester(oracle.alpha, oracle.seed)
    server, creators, waiter = None, None, futures.ThreadPoolExecutor(1)
    oracle.start_background()
    try:
        for _ in range(3):
            run_trial(oracle, "tuner0")
        running = oracle.create_trial("tuner1")  # past the random points: this one was suggested
        oracle.suggestions.stop()
        queue = oracle.suggestions = WatchedQueue(suggester, oracle.observations)  # nothing made ahead
        queue.start()
        token, port = auth.new_token(), free_port()
        server, creators = servicer.start(oracle, f"127.0.0.1:{port}", token)
        monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(port))
        tuner0, tuner1 = (Client(oracle, tid, timeout=30, token=lambda: token) for tid in ("tuner0", "tuner1"))

        create = waiter.submit(tuner0.create_trial, "tuner0")
        assert queue.asked.wait(60) and suggester.fitting.wait(60), "the create never waited for the fit"
        answer = tuner1.update_trial(running.trial_id, {"score": -0.5}, step=1)
        heartbeat = tuner1.get_trial(running.trial_id)
        not_its_own = tuner0.update_trial(running.trial_id, {"score": 0.9}, step=2)
        with pytest.raises(CoordinatorRefused, match="not an epoch number"):
            tuner1.update_trial(running.trial_id, {"score": -0.5}, step=-1)
        assert not create.done(), "the create did not wait for the suggestion"
        suggester.go_on.set()
        created = create.result(timeout=120)
    finally:
        suggester.go_on.set()
        waiter.shutdown(wait=False, cancel_futures=True)
        if server is not None:
            server.stop(grace=0.5)
        if creators is not None:
            creators.shutdown(wait=False, cancel_futures=True)
        oracle.stop_background()
    assert answer.status == "RUNNING" and heartbeat.status == "RUNNING"
    assert not_its_own.status == "STOPPED"  # refused: tuner0 does not hold the trial
    history = oracle.trials[running.trial_id].metrics.get_history("score")
    assert [(o.step, o.value) for o in history] == [(1, [-0.5])]
    assert created.status == "RUNNING" and oracle.ongoing_trials["tuner0"].trial_id == created.trial_id


def test_a_suggestion_missing_more_results_than_trials_running_is_not_handed_out() -> None:
    observed = Observations(np.zeros((5, 1)), np.zeros(5), np.empty((0, 1)))
    queue = SuggestionQueue(GPSuggester(1e-4, 0), lambda: observed)
    queue.give_back(np.array([0.1]), completed=5)
    queue.give_back(np.array([0.2]), completed=3)
    # 6 results in, 1 trial running: the suggestion made from 3 results is stale, the one from 5 is not.
    assert queue.take(completed=6, running=1, timeout=1) == pytest.approx([0.1])


def test_a_failed_suggestion_observes_without_holding_the_queue() -> None:
    """The oracle calls into the queue holding its own lock (a result is in), and the queue's
    fallback for a failed fit observes the oracle: that must not happen under the queue's lock."""

    class Failing(GPSuggester):
        def picks(self, obs: Observations, pending: list[np.ndarray]) -> Any:
            raise np.linalg.LinAlgError("degenerate fit")

    oracle_lock, falling_back = threading.Lock(), threading.Event()
    observed = Observations(np.zeros((5, 1)), np.zeros(5), np.empty((0, 1)))
    calls = 0

    def observe() -> Observations:
        nonlocal calls
        calls += 1
        if calls == 2:  # the fallback's call: it waits for the oracle, as the real one would
            falling_back.set()
            with oracle_lock:
                pass
        return observed

    queue = SuggestionQueue(Failing(1e-4, 0), observe)
    with oracle_lock:
        queue.start()
        assert falling_back.wait(10)
        told = threading.Thread(target=queue.changed)  # what the oracle does under its lock
        told.start()
        told.join(5)
        assert not told.is_alive()
    assert queue.take(completed=5, running=0, timeout=5) is not None  # the random fallback point
    queue.stop()


def test_the_lock_is_released_when_a_call_raises() -> None:
    class Thing:
        @locked
        def fail(self) -> None:
            raise ValueError("boom")

        @locked
        def ok(self) -> str:
            return "ok"

    thing = Thing()
    with pytest.raises(ValueError):
        thing.fail()
    result: list[str] = []
    other = threading.Thread(target=lambda: result.append(thing.ok()))
    other.start()
    other.join(timeout=2)
    assert result == ["ok"]  # Keras Tuner's own lock would still be held here


def test_random_values_are_keras_tuners_own(tmp_path: Path) -> None:
    """The faster sampler draws exactly what Keras Tuner's would, conditional values included."""
    from fmtune.models.families import MLP

    space = kt.HyperParameters()
    MLP().build(space)  # num_layers decides which units_i/dropout_i are active
    ours = type("Ours", (FmtuneOracle, kt.oracles.RandomSearchOracle), {})
    oracles = [
        cls(objective=kt.Objective("v", "max"), max_trials=40, hyperparameters=space.copy(), seed=5)
        for cls in (kt.oracles.RandomSearchOracle, ours)
    ]
    for i, oracle in enumerate(oracles):
        oracle.verbose = 0
        oracle._set_project_dir(str(tmp_path / str(i)), "p")  # Keras Tuner's own oracle too
    for i in range(30):
        theirs, mine = (oracle.create_trial(f"w{i}") for oracle in oracles)
        assert mine.hyperparameters.values == theirs.hyperparameters.values


@pytest.mark.filterwarnings("ignore:All-NaN")
def test_metric_bookkeeping_gives_keras_tuners_numbers() -> None:
    """Best values as Keras Tuner computes them (numpy's nanmin/nanmax of per-epoch means)."""
    kt_internals.install()

    rng = np.random.default_rng(0)
    nan = float("nan")
    for case in range(200):
        direction = "min" if case % 2 else "max"
        history = kt_internals.MetricHistory(direction)
        epochs: dict[int, list[float]] = {}
        for _ in range(rng.integers(1, 6)):
            step = int(rng.integers(0, 4))
            value = nan if rng.random() < 0.15 else float(rng.normal())
            history.update(value, step=step)
            epochs.setdefault(step, []).append(value)
        means = [np.mean(values) for values in epochs.values()]
        expected = np.nanmin(means) if direction == "min" else np.nanmax(means)
        got = history.get_best_value()
        assert (np.isnan(got) and np.isnan(expected)) or got == expected
        assert history.get_best_step() == next((s for s, v in epochs.items() if np.mean(v) == expected), None)
