"""Fixtures for the search engine's unit tests: oracles with no dataset or gRPC, on a clock the
test moves by hand, and the few helpers more than one test file drives them with."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import keras_tuner as kt

from fmtune import config
from fmtune.config import FaultTolerance, SearchConfig
from fmtune.tuning.algorithms import make_oracle
from fmtune.tuning.bayesian import FmtuneBayesianOracle
from fmtune.tuning.headers import CALLER
from fmtune.tuning.oracle import FmtuneOracle


class Clock:
    """Wall time that a test moves by hand: the oracle's one clock (leases, record, budget)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def settings(*assignments: str) -> tuple[SearchConfig, FaultTolerance]:
    """The quick preset's search with a random algorithm and no ASHA, and default fault
    tolerance, changed by ``search.*`` and ``fault_tolerance.*`` assignments (others are ignored)."""
    raw: dict[str, Any] = {"search": {**config.preset("quick")["search"], "algorithm": "random"}}
    raw["search"]["asha"] = {"enabled": False}
    for text in assignments:
        key, value = config.parse_assignment(text)
        if key.split(".")[0] in ("search", "fault_tolerance"):
            config.set_path(raw, key, value)
    return SearchConfig.model_validate(raw["search"]), FaultTolerance.model_validate(raw.get("fault_tolerance", {}))


def oracle_for(
    tmp_path: Path, *assignments: str, clock: Clock | None = None, space: kt.HyperParameters | None = None
) -> FmtuneOracle:
    """An oracle with its files under ``tmp_path`` and a search space of one integer, ``units``, on
    ``clock`` (else real time)."""
    search, tolerance = settings(*assignments)
    oracle = make_oracle(search, tolerance, seed=42, clock=clock if clock is not None else time.time)
    oracle.verbose = 0
    oracle.set_project_dir(tmp_path, "search")
    if space is None:
        space = kt.HyperParameters()
        space.Int("units", 8, 64)
    oracle.update_space(space)
    return oracle


def short_lease_oracle(tmp_path: Path, *assignments: str, clock: Clock | None = None) -> FmtuneOracle:
    """``oracle_for`` with three trials and a lease of 0.3 s (heartbeats every 0.05 s)."""
    defaults = ["search.max_trials=3", "fault_tolerance.heartbeat_seconds=0.05", "fault_tolerance.lease_seconds=0.3"]
    return oracle_for(tmp_path, *defaults, *assignments, clock=clock)


def finish(oracle: Any, trial: Any, caller: str, value: float) -> None:
    """``caller`` reports ``value`` for its trial's first epoch and ends it COMPLETED."""
    oracle.update_trial_from(caller, trial.trial_id, {"val_accuracy": value}, step=0)
    trial.status = "COMPLETED"
    oracle.end_trial_from(caller, trial)


def service_oracle(directory: Path) -> FmtuneOracle:
    """The oracle behind a served Oracle service: six trials over ``units`` (8 to 64, step 8) and
    ``learning_rate`` (0.001 or 0.01)."""
    space = kt.HyperParameters()
    space.Int("units", 8, 64, step=8)
    space.Choice("learning_rate", [0.001, 0.01])
    return oracle_for(directory, "search.max_trials=6", space=space)


def bayesian_oracle(tmp_path: Path, max_trials: int = 8) -> FmtuneBayesianOracle:
    """A Bayesian oracle maximising ``score`` over ``x`` and ``y`` in [0, 1], three random points
    first, with its files under ``tmp_path`` (no preset: built as Keras Tuner's own are)."""
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    hp.Float("y", 0.0, 1.0)
    oracle = FmtuneBayesianOracle(
        objective=kt.Objective("score", "max"),
        max_trials=max_trials,
        hyperparameters=hp,
        num_initial_points=3,
        seed=3,
    )
    oracle.verbose = 0
    oracle.set_project_dir(tmp_path, "search")
    return oracle


def score(values: dict[str, Any]) -> float:
    """The score ``bayesian_oracle``'s trials report: best at x=0.7, y=0.2."""
    return -((values["x"] - 0.7) ** 2) - (values["y"] - 0.2) ** 2


def run_trial(oracle: Any, tuner_id: str) -> Any:
    """One trial of ``bayesian_oracle``'s, created, reported once and ended COMPLETED."""
    trial = oracle.create_trial(tuner_id)
    assert trial.status == "RUNNING"
    oracle.update_trial_from(tuner_id, trial.trial_id, {"score": score(trial.hyperparameters.values)})
    trial.status = "COMPLETED"
    oracle.end_trial_from(tuner_id, trial)
    return oracle.trials[trial.trial_id]


class Aborted(Exception):
    """What a call's context raises when the servicer aborts it (as grpc.aio's does)."""


class Context:
    """A servicer call's context, as grpc.aio's: its metadata, led by the caller's tuner id when
    ``caller`` is given (none in the metadata if None)."""

    def __init__(self, caller: str | None = None, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata if caller is None else ((CALLER, caller), *metadata)
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def invocation_metadata(self) -> Any:
        return self.metadata

    def peer(self) -> str:
        return "ipv4:10.0.0.9:5555"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise Aborted(details)
