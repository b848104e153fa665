"""The dashboard's charts as plotly figures (plain JSON, drawn by plotly.js in the page).

Plotly reads a few HTML tags in any text it draws, so every string that comes from a trial or
the config is escaped here before it becomes a label.
"""

from __future__ import annotations

import html
import itertools
import math
from typing import Any

from fmtune.run_state import Phase, RunState
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
        dim: dict[str, Any] = {"label": text(cut(name + (" (log10)" if log else ""))), "values": numbers}
        if log:
            dim["values"] = [math.log10(v) if v == v else math.nan for v in numbers]
        return dim
    labels = sorted({str(v) for v in present}) + (["(none)"] if len(present) < len(values) else [])
    codes = [labels.index("(none)" if v is None else str(v)) for v in values]
    return {
        "label": text(cut(name)),
        "values": codes,
        "tickvals": list(range(len(labels))),
        "ticktext": labels,  # parcoords draws tick labels as plain text (no tags, no entities)
    }


TITLE_PX = 12  # the font of the parallel coordinates' titles
CHAR_PX = 7.5  # a character of it, at most about (plotly sets no width; this errs wide)
TITLE_CHARS = 30  # longer names are cut, with an ellipsis
PARALLEL_MIN_PX = 600  # the narrowest the axes ever get: the page keeps the chart at least this wide
PARALLEL_MARGIN = {"l": 90, "r": 90, "b": 30}
TITLE_GAP_PX = 28  # plotly puts a title this far above its axis


def title_width(label: str) -> float:
    return len(label) * CHAR_PX


def title_angle(labels: list[str], spacing: float) -> int:
    """The angle (degrees, as plotly's ``labelangle``) at which no two axis titles ``spacing``
    pixels apart overlap: level when each pair of neighbours fits side by side; else rising at 45
    degrees, where parallel lines of text ``spacing`` apart are ``spacing`` x sin 45 apart across;
    else upright, where they are ``spacing`` apart.

    >>> title_angle(["units", "dropout", "val_accuracy"], 300.0)
    0
    >>> title_angle(["learning_rate (log10)", "units", "dropout"], 60.0)
    -45
    >>> title_angle(["a" * 20] * 40, 600 / 39)
    -90
    """
    widths = [title_width(label) for label in labels]
    if all((a + b) / 2 + 2 * CHAR_PX <= spacing for a, b in itertools.pairwise(widths)):
        return 0
    line = TITLE_PX * 1.4  # a line of text, with the gap it needs
    return -45 if spacing * math.sin(math.radians(45)) >= line else -90


def cut(label: str) -> str:
    """A title no longer than TITLE_CHARS.

    >>> cut("x" * 40)[-3:], len(cut("x" * 40))
    ('xx…', 30)
    """
    return label if len(label) <= TITLE_CHARS else label[: TITLE_CHARS - 1] + "…"


def titled(labels: list[str]) -> tuple[int, dict[str, Any]]:
    """The titles' angle and the margins that hold them: above the axes, and to the right of the
    last one when the titles rise towards it (the colour bar is beside the axes, below them)."""
    spacing = PARALLEL_MIN_PX / max(1, len(labels) - 1)
    angle = title_angle(labels, spacing)
    widths = [title_width(label) for label in labels] or [0.0]
    rise, run = math.sin(math.radians(-angle)), math.cos(math.radians(angle))
    top = 40 + TITLE_GAP_PX + TITLE_PX + max(widths) * rise  # the chart's title, then the axes' titles
    # Any title, not only the last, can reach past the last axis when it is long enough.
    reach = [(w * run if angle else w / 2) - (len(widths) - 1 - i) * spacing for i, w in enumerate(widths)]
    right = max(PARALLEL_MARGIN["r"], max(reach) + 10)
    spill = max(w / 2 - i * spacing for i, w in enumerate(widths))
    left = max(PARALLEL_MARGIN["l"], spill + 10) if angle == 0 else PARALLEL_MARGIN["l"]
    return angle, {**PARALLEL_MARGIN, "l": round(left), "r": round(right), "t": round(top)}


def parallel_coordinates(state: RunState) -> Figure:
    """Each finished trial as a line through its hyperparameters to its objective. With many
    hyperparameters the titles rise at an angle, and the chart is made tall enough to hold them."""
    trials = scored(state)
    names = sorted({k for t in trials for k in t.hyperparameters if not k.startswith("tuner/")})
    dims = [d for n in names if (d := _dimension(n, [t.hyperparameters.get(n) for t in trials]))]
    scores = [t.score for t in trials]
    if trials:
        dims.append({"label": text(cut(state.objective)), "values": scores})
    angle, margin = titled([html.unescape(d["label"]) for d in dims])
    trace: dict[str, Any] = {
        "type": "parcoords",
        "dimensions": dims,
        "labelangle": angle,
        "labelside": "top",
        "labelfont": {"size": TITLE_PX},
        "line": {
            "color": scores,
            "colorscale": "Viridis",
            "reversescale": state.direction == "min",
            "showscale": True,
            "colorbar": {"thickness": 14},
        },
    }
    height = BASE_LAYOUT["height"] + max(0, margin["t"] - 90)  # the axes keep their length
    shown = layout("Hyperparameters against the objective", margin=margin, height=height)
    # The chart's title at the very top, above the axes' titles (plotly centres it in the margin).
    shown["title"].update(y=1, yref="container", yanchor="top", pad={"t": 12})
    return {"data": [trace] if trials else [], "layout": shown}


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
    """Retraining's accuracy epoch by epoch: growing as its epochs end, then the finished record."""
    history = state.retrain.history if state.retrain is not None else state.retrain_epochs
    data = []
    for metric in sorted({m for e in history for m in e.metrics if "accuracy" in m}):
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": text(metric),
                "x": [e.epoch + 1 for e in history if metric in e.metrics],
                "y": [e.metrics[metric] for e in history if metric in e.metrics],
            }
        )
    running = state.retrain is None and history and state.phase == Phase.RETRAIN
    title = "Retraining the best configuration" + (f" (epoch {len(history)} so far)" if running else "")
    return {
        "data": data,
        "layout": layout(title, xaxis=axis("epoch", dtick=1), yaxis=axis("accuracy"), height=300),
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
