"""What the page shows for a run state: a summary, the trial and worker tables, and the charts.

The page renders this as it is (text through the DOM, never as HTML); ``fmtune report`` draws the
same view into report.png and report.html.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fmtune.dashboard import charts
from fmtune.dashboard.importance import importances
from fmtune.run_state import RunState
from fmtune.text import last_line
from fmtune.trials import TrialRecord


def trial_row(t: TrialRecord) -> dict[str, Any]:
    return {
        "trial_id": t.trial_id,
        "status": t.status,
        "score": t.score,
        "best_epoch": None if t.best_epoch is None or t.score is None else t.best_epoch + 1,
        "epochs": len(t.history),
        "worker": t.worker,
        "seconds": t.seconds,
        "started_at": t.started_at.isoformat() if t.started_at else None,
        "ended_at": t.ended_at.isoformat() if t.ended_at else None,
        "hyperparameters": {k: v for k, v in t.hyperparameters.items() if not k.startswith("tuner/")},
        "rung": t.rung,
        "stopped_by": t.stopped_by,
        "requeued_from": [r.worker for r in t.requeues],
        "error": last_line(t.message) if t.status in ("FAILED", "INVALID", "QUEUED") else "",
    }


def hyperparameter_shares(state: RunState) -> dict[str, float]:
    done = [t for t in state.trials if t.status == "COMPLETED" and t.score is not None]
    return importances([t.hyperparameters for t in done], [t.score or 0.0 for t in done])


def summary(state: RunState) -> dict[str, Any]:
    best = charts.scored(state)
    sign = 1.0 if state.direction == "max" else -1.0
    completed = [t for t in best if t.status == "COMPLETED"]
    top = max(completed, key=lambda t: sign * (t.score or 0.0)) if completed else None
    elapsed = (state.updated_at - state.started_at).total_seconds() if state.started_at else None
    r = state.retrain
    return {
        "experiment": state.experiment,
        "dataset": state.dataset,
        "family": state.family,
        "algorithm": state.algorithm,
        "phase": state.phase.value,
        "objective": state.objective,
        "direction": state.direction,
        "max_trials": state.max_trials,
        "trials_finished": state.trials_finished,
        "trials_running": state.trials_running,
        "counts": dict(Counter(t.status for t in state.trials)),
        "best_score": state.best_score,
        "best_trial": top.trial_id if top else None,
        "best_hyperparameters": top.hyperparameters if top else None,
        "epochs_per_trial": state.epochs_per_trial,
        "started_at": state.started_at.isoformat() if state.started_at else None,
        "updated_at": state.updated_at.isoformat(),
        "elapsed_seconds": elapsed,
        "budget": state.budget.model_dump() if state.budget else None,
        "message": state.message,
        "retrain": None
        if r is None
        else {"epochs_run": r.epochs_run, "seconds": r.seconds, "train_samples": r.train_samples},
        "test_accuracy": state.test_accuracy,
        "exported_version": state.exported_version,
        "deployment": state.deployment.model_dump() if state.deployment else None,
    }


def build(state: RunState, shares: dict[str, float] | None = None) -> dict[str, Any]:
    """The page's data. ``shares``: hyperparameter importance already estimated for this state
    (it is the costly part), else estimated here."""
    shares = hyperparameter_shares(state) if shares is None else shares
    return {
        "summary": summary(state),
        "trials": [trial_row(t) for t in state.trials],
        "workers": [w.model_dump(mode="json") for w in state.workers],
        "importance": shares,
        "figures": {
            "best": charts.placeholder(charts.best_so_far(state), "no trial has finished yet"),
            "curves": charts.placeholder(charts.learning_curves(state), "no epoch reported yet"),
            "parallel": charts.placeholder(charts.parallel_coordinates(state), "no trial has finished yet"),
            "importance": charts.placeholder(
                charts.importance(shares), "needs 4 completed trials in which a hyperparameter varies"
            ),
            "retrain": charts.placeholder(charts.retraining(state), "retraining has not run yet"),
        },
    }
