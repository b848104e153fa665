"""Keras Tuner's Bayesian optimisation with its suggestions computed ahead, off the request path."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt
import numpy as np

from fmtune.tuning.centre import fill
from fmtune.tuning.kt_internals import FINISHED, Status, Trial, locked
from fmtune.tuning.oracle import FmtuneOracle
from fmtune.tuning.stopping import Asha
from fmtune.tuning.suggest import GPSuggester, Observations, SuggestionQueue

SUGGESTION_WAIT_SECONDS = 30.0


class FmtuneBayesianOracle(FmtuneOracle, kt.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation whose suggestions come from ``fmtune.tuning.suggest``. A worker asking
    for a trial waits for a suggestion without holding the oracle's lock, so reports and heartbeats
    are answered meanwhile. The first trial is the centre of the space (``fmtune.tuning.centre``),
    then come the random initial points. ``beta`` is accepted and kept for Keras Tuner's state file, but the
    acquisition is expected improvement, which has no such knob."""

    create_may_wait = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.suggestions = SuggestionQueue(GPSuggester(self.alpha, self.seed), self.observations)
        self._point: np.ndarray | None = None  # the suggestion the current create_trial hands out
        self._vectors: dict[str, tuple[int, list[float]]] = {}

    def start_background(self) -> None:
        super().start_background()
        self.suggestions.start()

    def stop_background(self) -> None:
        self.suggestions.stop()
        super().stop_background()

    def on_ended(self) -> None:
        self.suggestions.changed()

    def _initial_points(self) -> int:
        return int(self.num_initial_points or max(3 * len(self.hyperparameters.space), 3))

    def _completed(self) -> list[Any]:
        """The ended trials the GP learns from, each with its score (see ``_learns``)."""
        return [t for t in self.trials.values() if self._learns(t) is not None]

    def _learns(self, trial: Any) -> float | None:
        """What the GP learns from an ended trial: its score; under ASHA, which stops most trials
        early, its objective at the first rung, the one epoch every trial reached."""
        if isinstance(self.stopping, Asha):
            if trial.status not in FINISHED:
                return None
            return self.curve(trial).get(self.stopping.first_rung - 1)
        return trial.score if trial.status == Status.COMPLETED else None

    def _wants_suggestion(self, tuner_id: str, completed: int) -> bool:
        """Racy reads, re-checked under the lock: a suggestion taken in vain is given back. A space
        with nothing to tune (a user's model with fixed values alone) has nothing to suggest: its
        one configuration comes from the random phase, and the search ends when it repeats."""
        return (
            tuner_id not in self.ongoing_trials
            and bool(self.nonfixed_space())
            and self.control.may_create(len(self.trials), len(self.retry_queue))
            and completed >= self._initial_points()
        )

    def create_trial(self, tuner_id: str) -> Any:
        completed = len(self._completed())
        if not self._wants_suggestion(tuner_id, completed):
            return super().create_trial(tuner_id)
        point = self.suggestions.take(completed, len(self.ongoing_trials), SUGGESTION_WAIT_SECONDS)
        if point is None:  # the worker asks again (Keras Tuner's IDLE)
            return Trial(self.get_space(), status=Status.IDLE)
        return self._create_with(tuner_id, point)

    @locked
    def _create_with(self, tuner_id: str, point: np.ndarray) -> Any:
        self._point = point
        try:
            return super().create_trial(tuner_id)
        finally:
            if self._point is not None:
                self.suggestions.give_back(self._point, len(self._completed()))
            self._point = None

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if not self.trials:  # the search's first trial, which no random draw would likely come near
            return {"status": Status.RUNNING, "values": fill(self.hyperparameters)}
        if self._point is None or len(self._completed()) < self._initial_points():
            return self.random_populate_space()
        values = self.vector_to_values(self._point)
        self._point = None
        return {"status": Status.RUNNING, "values": values}

    def _vector(self, trial: Any) -> list[float]:
        """Keras Tuner's encoding: each non-fixed hyperparameter as a probability in [0, 1]."""
        space = self.nonfixed_space()
        cached = self._vectors.get(trial.trial_id)
        if cached is not None and cached[0] == len(space) and trial.status == Status.COMPLETED:
            return cached[1]
        values = trial.hyperparameters.values
        vector = [
            hp.value_to_prob(
                values[hp.name] if trial.hyperparameters.is_active(hp) and hp.name in values else hp.default
            )
            for hp in space
        ]
        self._vectors[trial.trial_id] = (len(space), vector)
        return vector

    @locked
    def observations(self) -> Observations:
        completed = self._completed()
        scores = [self._learns(t) for t in completed]
        sign = -1.0 if self.objective.direction == "max" else 1.0
        dimensions = len(self.nonfixed_space())
        pending = [self._vector(t) for t in self.ongoing_trials.values()]
        return Observations(
            x=np.array([self._vector(t) for t in completed]).reshape(len(completed), dimensions),
            y=sign * np.array(scores, dtype=float),
            pending=np.array(pending).reshape(len(pending), dimensions),
            workers=len(self.tuner_ids),
            enough=dimensions > 0 and len(completed) >= self._initial_points(),  # see _wants_suggestion
        )
