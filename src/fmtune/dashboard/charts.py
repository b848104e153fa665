"""The dashboard's charts as plotly figures (plain JSON, drawn by plotly.js in the page).

Plotly reads a few HTML tags in any text it draws, so every string that comes from a trial or
the config is escaped here before it becomes a label.
"""

from __future__ import annotations

import html
import math
from typing import Any

from fmtune.run_state import RunState
from fmtune.trials import TrialRecord

Figure = dict[str, Any]
COLORS = {"COMPLETED": "#1f77b4", "STOPPED": "#ff7f0e", "FAILED": "#d62728", "RUNNING": "#2ca02c"}
BASE_LAYOUT: dict[str, Any] = {
    "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
    "height": 340,
    "template": None,
    "font": {"size": 12},
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "hovermode": "closest",
}
MAX_CURVES = 200  # beyond this, the running trials and the best ones: more lines are unreadable


def text(value: Any) -> str:
    """A string plotly draws as it is (its own tags included: ``<b>`` stays ``<b>``).

    >>> text("<script>x</script>")
    '&lt;script&gt;x&lt;/script&gt;'
    """
    return html.escape(str(value), quote=False)


def layout(title: str, **extra: Any) -> dict[str, Any]:
    return {**BASE_LAYOUT, "title": {"text": text(title), "x": 0.02, "font": {"size": 14}}, **extra}


def axis(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": text(title)}, "gridcolor": "#e5e5e5", "zeroline": False, **extra}


def scored(state: RunState) -> list[TrialRecord]:
    """Finished trials with a score, in the order they ended."""
    done = [t for t in state.trials if t.score is not None and t.ended_at is not None and t.status != "RUNNING"]
    return sorted(done, key=lambda t: (t.ended_at, t.trial_id))


def best_so_far(state: RunState) -> Figure:
    """Every finished trial's objective against the time it ended, and the best so far as a step line."""
    trials = scored(state)
    data: list[dict[str, Any]] = []
    for status in ("COMPLETED", "STOPPED"):
        group = [t for t in trials if t.status == status]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "stopped early" if status == "STOPPED" else "trial",
                "x": [t.ended_at.isoformat() for t in group if t.ended_at],
                "y": [t.score for t in group],
                "text": [f"trial {text(t.trial_id)}" for t in group],
                "marker": {"color": COLORS[status], "size": 8},
            }
        )
    points = state.best_history
    xs = [p.at.isoformat() for p in points]
    ys: list[float] = [p.score for p in points]
    if points:  # the line goes on to now (to the last trial's end once the search is over)
        last = state.updated_at if not state.search_ended else max(t.ended_at for t in trials if t.ended_at)
        xs.append(max(last, points[-1].at).isoformat())
        ys.append(points[-1].score)
    data.insert(
        0,
        {
            "type": "scatter",
            "mode": "lines",
            "name": "best so far",
            "x": xs,
            "y": ys,
            "line": {"shape": "hv", "color": "#2ca02c", "width": 3},
        },
    )
    return {
        "data": data,
        "layout": layout(
            "Objective per trial, and the best so far",
            xaxis=axis("time the trial ended", type="date"),
            yaxis=axis(state.objective),
            legend={"orientation": "h", "y": -0.25},
        ),
    }


def _curve(t: TrialRecord, metric: str) -> tuple[list[int], list[float | None]]:
    points = [(e.epoch + 1, e.metrics.get(metric)) for e in t.history if metric in e.metrics]
    return [p[0] for p in points], [p[1] for p in points]


def curve_trials(state: RunState) -> list[TrialRecord]:
    with_epochs = [t for t in state.trials if t.history]
    if len(with_epochs) <= MAX_CURVES:
        return with_epochs
    sign = -1.0 if state.direction == "max" else 1.0
    running = [t for t in with_epochs if t.status == "RUNNING"]
    ranked = sorted((t for t in with_epochs if t.score is not None), key=lambda t: sign * (t.score or 0.0))
    return running + ranked[: max(0, MAX_CURVES - len(running))]


def learning_curves(state: RunState) -> Figure:
    """The objective epoch by epoch for each trial (optuna-dashboard's intermediate values); the
    running trials are drawn thicker."""
    data = []
    for t in curve_trials(state):
        xs, ys = _curve(t, state.objective)
        running = t.status == "RUNNING"
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": f"trial {text(t.trial_id)}",
                "x": xs,
                "y": ys,
                "line": {"width": 3 if running else 1.2, "color": COLORS.get(t.status, "#7f7f7f")},
                "marker": {"size": 4},
                "opacity": 1.0 if running else 0.6,
            }
        )
    return {
        "data": data,
        "layout": layout(
            "Learning curves (thick: running)",
            xaxis=axis("epoch", dtick=1),
            yaxis=axis(state.objective),
            showlegend=False,
        ),
    }


def _dimension(name: str, values: list[Any]) -> dict[str, Any] | None:
    present = [v for v in values if v is not None]
    if len({repr(v) for v in values}) < 2:
        return None  # a value every trial shares says nothing
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        numbers = [math.nan if v is None else float(v) for v in values]
        log = name in ("learning_rate", "l2") and min(present) > 0
        dim: dict[str, Any] = {"label": text(name + (" (log10)" if log else "")), "values": numbers}
        if log:
            dim["values"] = [math.log10(v) if v == v else math.nan for v in numbers]
        return dim
    labels = sorted({str(v) for v in present}) + (["(none)"] if len(present) < len(values) else [])
    codes = [labels.index("(none)" if v is None else str(v)) for v in values]
    return {
        "label": text(name),
        "values": codes,
        "tickvals": list(range(len(labels))),
        "ticktext": labels,  # parcoords draws tick labels as plain text (no tags, no entities)
    }


def parallel_coordinates(state: RunState) -> Figure:
    """Each finished trial as a line through its hyperparameters to its objective."""
    trials = scored(state)
    names = sorted({k for t in trials for k in t.hyperparameters if not k.startswith("tuner/")})
    dims = [d for n in names if (d := _dimension(n, [t.hyperparameters.get(n) for t in trials]))]
    scores = [t.score for t in trials]
    if trials:
        dims.append({"label": text(state.objective), "values": scores})
    trace: dict[str, Any] = {
        "type": "parcoords",
        "dimensions": dims,
        "line": {
            "color": scores,
            "colorscale": "Viridis",
            "reversescale": state.direction == "min",
            "showscale": True,
        },
    }
    return {
        "data": [trace] if trials else [],
        "layout": layout("Hyperparameters against the objective", margin={"l": 110, "r": 70, "t": 90, "b": 30}),
    }


def importance(shares: dict[str, float]) -> Figure:
    names = list(shares)[::-1]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [shares[n] for n in names],
                "y": [text(n) for n in names],
                "marker": {"color": "#1f77b4"},
            }
        ]
        if shares
        else [],
        "layout": layout(
            "Hyperparameter importance (random forest, completed trials)",
            xaxis=axis("share of the objective's variation", range=[0, 1]),
            yaxis={"automargin": True},
        ),
    }


def retraining(state: RunState) -> Figure:
    r = state.retrain
    data = []
    if r is not None:
        metrics = sorted({m for e in r.history for m in e.metrics if "accuracy" in m})
        for metric in metrics:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": text(metric),
                    "x": [e.epoch + 1 for e in r.history if metric in e.metrics],
                    "y": [e.metrics[metric] for e in r.history if metric in e.metrics],
                }
            )
    return {
        "data": data,
        "layout": layout(
            "Retraining the best configuration", xaxis=axis("epoch", dtick=1), yaxis=axis("accuracy"), height=300
        ),
    }


def placeholder(figure: Figure, note: str) -> Figure:
    """A figure with nothing to draw yet says so, rather than showing empty axes."""
    if any(trace.get("x") or trace.get("dimensions") for trace in figure["data"]):
        return figure
    hidden = {"visible": False}
    annotation = {"text": text(note), "showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}
    return {
        "data": [],
        "layout": {**figure["layout"], "xaxis": hidden, "yaxis": hidden, "annotations": [annotation]},
    }
