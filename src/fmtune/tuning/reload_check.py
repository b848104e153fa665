"""What a restarted coordinator accepts from the trial files it reloads.

Keras Tuner loads every ``trial_*/trial.json`` it finds, so whoever can write the oracle's
directory could otherwise add a trial that was never run and make it the best. Each file is held
against the coordinator's own record in oracle.json: the trials it handed out (``start_order``),
the hash of each trial's values (``id_to_hash``), the score of each completed trial
(``fmtune_scores``), and the search space. A trial never handed out is dropped; one whose file
disagrees with the record is kept out of the results (INVALID, no score, no metrics), so it is
neither the best nor run again with values nobody chose. Each refusal is logged with its reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fmtune.tuning import checks
from fmtune.tuning.kt_internals import MetricsTracker, Status

log = logging.getLogger("fmtune")
SCORES = "fmtune_scores"  # oracle.json's record of each completed trial's score


def recorded_scores(trials: Mapping[str, Any], ended: Iterable[str]) -> dict[str, float | None]:
    """The score of each completed trial, for oracle.json."""
    return {t: trials[t].score for t in ended if t in trials and trials[t].status == Status.COMPLETED}


@dataclass(frozen=True)
class Record:
    """The coordinator's record of its trials, from oracle.json."""

    handed_out: frozenset[str]
    in_flight: frozenset[str]  # handed out, not yet ended: their files may be newer than the record
    hashes: Mapping[str, str | None]
    scores: Mapping[str, float | None] | None  # None: an oracle.json from before scores were kept
    space: list[Any]
    objective: Any
    values_hash: Callable[[dict[str, Any]], str]

    @classmethod
    def of(cls, oracle: Any, state: Mapping[str, Any], declared: list[Any]) -> Record:
        """``declared``: the space the hypermodel declared, widened by what oracle.json adds."""
        known = {hp.name for hp in declared}
        return cls(
            handed_out=frozenset(state.get("start_order", ())),
            in_flight=frozenset(state.get("ongoing_trials", {}).values()),
            hashes=dict(state.get("id_to_hash", {})),
            scores=state.get(SCORES),
            space=declared + [hp for hp in oracle.hyperparameters.space if hp.name not in known],
            objective=oracle.objective,
            values_hash=oracle.values_hash,
        )


def problem(trial: Any, record: Record) -> str | None:
    """Why ``trial``'s file cannot be trusted, or None."""
    if trial.trial_id not in record.handed_out:
        return "the coordinator never handed it out"
    values = trial.hyperparameters.copy()
    values.ensure_active_values()
    if record.values_hash(values.values) != record.hashes.get(trial.trial_id):
        return "its values are not those the coordinator recorded"
    try:
        checks.values_in_space(record.space, trial.hyperparameters.values)
    except checks.RequestError as exc:
        return str(exc)
    return _score_problem(trial, record)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _score_problem(trial: Any, record: Record) -> str | None:
    """A metric no model reaches (``checks.objective``: an accuracy outside 0 to 1, a negative
    loss, infinity), or a score that is not the one its metrics and the record give."""
    name = record.objective.name
    try:
        for metric, history in trial.metrics.metrics.items():
            for observation in history.get_history():
                for value in observation.value:
                    if math.isinf(value):
                        return f"metric {metric} is infinite"
                    if metric == name:
                        checks.objective(name, value)
        if trial.status != Status.COMPLETED or trial.trial_id in record.in_flight:
            return None  # one in flight runs again (a crash cut its end short)
        score = trial.score
        if score is None or not math.isfinite(score):
            return f"it is COMPLETED with score {score}"
        checks.objective(name, score)
    except checks.RequestError as exc:
        return str(exc)
    if trial.metrics.exists(name):
        best = trial.metrics.get_best_value(name)
        if best is None or not _close(score, best):
            return f"score {score} is not the best of its own metrics ({best})"
    if record.scores is not None:
        if trial.trial_id not in record.scores:
            return "the coordinator never recorded it as completed"
        recorded = record.scores[trial.trial_id]
        if recorded is None or not _close(score, recorded):
            return f"score {score} is not the {recorded} the coordinator recorded"
    return None


def refuse_untrusted(trials: dict[str, Any], record: Record, where: object) -> list[str]:
    """Check every reloaded trial in ``trials`` (see the module docstring), in place; returns the
    ids of the handed-out trials made INVALID, for the caller to take out of its queues."""
    if record.scores is None:
        log.warning("oracle.json records no scores (written by an older fmtune): trial scores are not checked")
    refused = []
    for trial_id, trial in list(trials.items()):
        reason = problem(trial, record)
        if reason is None:
            continue
        log.warning("refused trial %s from %s on reload: %s", trial_id, where, reason)
        if trial_id not in record.handed_out:
            del trials[trial_id]
            continue
        trial.status, trial.score, trial.best_step = Status.INVALID, None, None
        trial.metrics = MetricsTracker()
        trial.message = f"refused on reload: {reason}"
        refused.append(trial_id)
    return refused
