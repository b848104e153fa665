"""What the page shows for a run state: a summary, the trial and worker tables, and the charts.

The page renders this as it is (text through the DOM, never as HTML); ``fmtune report`` draws the
same view into report.png and report.html.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fmtune.dashboard import charts
from fmtune.dashboard.importance import importances
from fmtune.run_state import Phase, RunState
from fmtune.text import last_line
from fmtune.trials import TrialRecord

RULES = {"Asha": "ASHA", "MedianStopping": "the median rule"}  # stopping rules by class name, in words
BUDGET = "budget"  # fmtune.tuning.oracle.BUDGET: what stopped a trial when the search's time ran out


def planned_epochs(t: TrialRecord, epochs_per_trial: int | None) -> int | None:
    """The epochs a trial was to run: its own (Hyperband's ``tuner/epochs``), else the search's."""
    own = t.hyperparameters.get("tuner/epochs")
    return int(own) if isinstance(own, int | float) and not isinstance(own, bool) else epochs_per_trial


def stop_reason(t: TrialRecord, epochs_per_trial: int | None = None) -> str:
    """Why a trial ended where it did, in words: empty while it runs, and for one that ran all
    its epochs.

    >>> from fmtune.trials import Epoch
    >>> once = [Epoch(epoch=0, metrics={"val_accuracy": 0.8})]
    >>> stop_reason(TrialRecord(trial_id="1", status="COMPLETED", stopped_by="budget", history=once), 9)
    "stopped by the budget after epoch 1 of 9: the search's time was up (its score counts)"
    """
    ran = len(t.history)
    planned = planned_epochs(t, epochs_per_trial)
    of = f" of {planned}" if planned else ""
    if t.status in ("FAILED", "INVALID"):
        return f"{t.status.lower()}: {last_line(t.message, 'no message')}"
    if t.status == "QUEUED":
        return f"waiting to run again: {last_line(t.message)}" if t.message else "waiting to run again"
    if t.stopped_by == BUDGET and not (planned and ran >= planned):  # else it ran all its epochs anyway
        return f"stopped by the budget after epoch {ran}{of}: the search's time was up (its score counts)"
    if t.stopped_by is not None and t.stopped_by != BUDGET:
        rule = RULES.get(t.stopped_by, t.stopped_by)
        rung = f" at rung {t.rung + 1}" if t.rung is not None and t.stopped_by == "Asha" else ""
        return f"stopped by {rule}{rung}, after epoch {ran}{of}"
    if t.status in ("COMPLETED", "STOPPED") and planned and 0 < ran < planned:
        return f"ended by its own early stopping after epoch {ran}{of}: no better objective in its last epochs"
    return ""


def trial_row(t: TrialRecord, epochs_per_trial: int | None = None) -> dict[str, Any]:
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
        "planned_epochs": planned_epochs(t, epochs_per_trial),
        "stop_reason": stop_reason(t, epochs_per_trial),
    }


def hyperparameter_shares(state: RunState) -> dict[str, float]:
    done = [t for t in state.trials if t.status == "COMPLETED" and t.score is not None]
    return importances([t.hyperparameters for t in done], [t.score or 0.0 for t in done])


STEPS = (Phase.SEARCH, Phase.RETRAIN, Phase.EXPORT, Phase.DEPLOY)


def failed_at(state: RunState) -> Phase:
    """The step a failed run stopped in: as recorded, else (a state from before that was kept)
    from what it left."""
    if state.failed_in is not None and state.failed_in in STEPS:
        return state.failed_in
    dep = state.deployment
    if dep is not None and dep.outcome in ("refused", "failed"):
        return Phase.DEPLOY
    if state.test_accuracy is not None or state.retrain is not None:
        return Phase.EXPORT
    if state.retrain_epochs:
        return Phase.RETRAIN
    return Phase.SEARCH


def phases(state: RunState) -> list[dict[str, str]]:
    """The run's steps, each done, current, failed, to come or skipped: search, retrain, export,
    then deploy (a step of its own when the run deploys) and done.

    >>> [p["status"] for p in phases(RunState(experiment="e", config_digest="d", max_trials=1,
    ...     objective="val_accuracy", phase=Phase.EXPORT))]
    ['done', 'done', 'current', 'skipped', 'next']
    """
    steps = list(STEPS)
    deploys = state.deploys or (state.deployment is not None and state.deployment.outcome != "exported")
    current = failed_at(state) if state.phase == Phase.FAILED else state.phase
    at = len(steps) if current == Phase.DONE else steps.index(current)
    out = []
    for i, step in enumerate(steps):
        if step == Phase.DEPLOY and not deploys:
            status = "skipped"
        elif i < at:
            status = "done"
        elif i == at:
            status = "failed" if state.phase == Phase.FAILED else "current"
        else:
            status = "next"
        out.append({"phase": step.value, "status": status})
    done = "done" if state.phase == Phase.DONE else "next"
    return [*out, {"phase": Phase.DONE.value, "status": done}]


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
        "phases": phases(state),
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
        "state_write_failures": state.state_write_failures,
        "state_write_error": state.state_write_error,
        "retrain": None
        if r is None
        else {"epochs_run": r.epochs_run, "seconds": r.seconds, "train_samples": r.train_samples},
        "retrain_epochs_so_far": len(state.retrain_epochs),
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
        "trials": [trial_row(t, state.epochs_per_trial) for t in state.trials],
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
