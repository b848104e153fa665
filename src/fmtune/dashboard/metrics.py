"""The coordinator's Prometheus metrics, read from its run state at each scrape.

They come from the record the dashboard and ``fmtune report`` draw on (``fmtune.run_state``), so
the three cannot disagree, and counting them costs the search nothing: no call of the oracle
touches a metric. The few that only exist while calls run (RPC and suggestion latency) are the
search engine's own (``fmtune.tuning.rpc_metrics``) and are added to the same registry.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from fmtune.run_state import Phase, RunState

EPOCH_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)
"""A trial epoch's seconds: from a small MLP's epoch on a subset to a CNN's on one CPU core."""


class StateCollector(Collector):
    """Metrics of the run state ``source`` returns (None: no state yet, and no metrics)."""

    def __init__(self, source: Callable[[], RunState | None]):
        self._source = source

    def collect(self) -> Iterator[Metric]:
        state = self._source()
        if state is None:
            return
        yield from trial_metrics(state)
        yield from worker_metrics(state)
        yield from run_metrics(state)


def trial_metrics(state: RunState) -> Iterator[Metric]:
    started = CounterMetricFamily("fmtune_trials_started", "Trials handed out to workers.")
    started.add_metric([], sum(t.started_at is not None for t in state.trials))
    yield started

    ended = CounterMetricFamily(
        "fmtune_trials_ended",
        "Trials ended for good, by status and by what stopped them (none: it ran its epochs).",
        labels=["status", "stopped_by"],
    )
    for (status, stopped_by), count in sorted(
        Tally((t.status, t.stopped_by or "none") for t in state.trials if t.finished).items()
    ):
        ended.add_metric([status, stopped_by], count)
    yield ended

    now = GaugeMetricFamily("fmtune_trials", "Trials by their status now.", labels=["status"])
    for status, count in sorted(Tally(t.status for t in state.trials).items()):
        now.add_metric([status], count)
    yield now

    requeued = CounterMetricFamily(
        "fmtune_trials_requeued", "Trials taken back from a worker that went silent or came back without them."
    )
    requeued.add_metric([], sum(len(t.requeues) for t in state.trials))
    yield requeued

    seconds = [s for t in state.trials for s in t.epoch_seconds]
    buckets = [(str(float(bound)), sum(s <= bound for s in seconds)) for bound in EPOCH_BUCKETS]
    epochs = HistogramMetricFamily("fmtune_trial_epoch_seconds", "Wall time of each trial epoch a worker reported.")
    epochs.add_metric([], [*buckets, ("+Inf", len(seconds))], sum_value=sum(seconds))
    yield epochs


def worker_metrics(state: RunState) -> Iterator[Metric]:
    workers = GaugeMetricFamily(
        "fmtune_workers",
        "Workers by status (running, idle, silent: no call within its lease, left).",
        labels=["status"],
    )
    counts = Tally(w.status for w in state.workers)
    for status in ("running", "idle", "silent", "left"):
        workers.add_metric([status], counts.get(status, 0))
    yield workers


def run_metrics(state: RunState) -> Iterator[Metric]:
    phase = GaugeMetricFamily("fmtune_phase", "1 for the phase the experiment is in.", labels=["phase"])
    for each in Phase:
        phase.add_metric([each.value], float(state.phase == each))
    yield phase

    if state.budget is not None:
        left = GaugeMetricFamily(
            "fmtune_budget_seconds_left", "What was left of the time budget when the state was last written."
        )
        left.add_metric([], max(0.0, state.budget.seconds - state.budget.used_seconds))
        yield left

    if state.best_score is not None:
        best = GaugeMetricFamily(
            "fmtune_best_objective", "The best completed trial's objective so far.", labels=["objective", "direction"]
        )
        best.add_metric([state.objective, state.direction], state.best_score)
        yield best

    failures = CounterMetricFamily(
        "fmtune_state_write_failures", "Writes of the coordinator's own state that failed (a full disk, say)."
    )
    failures.add_metric([], state.state_write_failures)
    yield failures


def registry(source: Callable[[], RunState | None]) -> CollectorRegistry:
    """A registry of one experiment's metrics (one per server, so two in a process stay apart)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(StateCollector(source))
    return found
