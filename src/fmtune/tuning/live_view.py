"""What changed in the oracle since a reader last looked, copied under its lock: for the run's
state writer, which keeps state.json up to date while the search goes on.

Trials that ended stay as they are, so a reader keeps them and the cost follows the changes, not
the size of the search. Nothing here changes the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fmtune.trials import TrialRecord, TrialStatus
from fmtune.tuning.bookkeeping import Copied
from fmtune.tuning.kt_internals import locked
from fmtune.tuning.oracle import FmtuneOracle


@dataclass(frozen=True)
class LiveView:
    trials: dict[str, TrialRecord]  # the trials asked for, and those that changed
    lease_deadlines: dict[str, float]  # trial id -> when its lease runs out (on ``clock``)
    holders: dict[str, str]  # trial id -> the worker running it
    queued: list[str]
    waiting: set[str]  # workers that asked and wait for an answer
    last_calls: dict[str, float]  # worker -> its last call (on ``clock``)
    clock: float
    started: int  # trials handed out so far
    ended: list[str]  # trials that ended since the last view, in order
    progress: tuple[int, int, float | None]  # finished, running, best score


def live_view(
    oracle: FmtuneOracle, trial_ids: set[str], since_start: int, since_end: int, everything: bool
) -> LiveView:
    """The trials among ``trial_ids``, those started after ``start_order[since_start]`` or ended
    after ``end_order[since_end]``, those running or queued (every trial if ``everything``), and
    who holds what. Copied under the oracle's lock; frozen outside it."""
    view, copied = _copy(oracle, trial_ids, since_start, since_end, everything)
    return replace(view, trials={trial_id: oracle.book.freeze(c) for trial_id, c in copied.items()})


@locked
def _copy(
    oracle: FmtuneOracle, trial_ids: set[str], since_start: int, since_end: int, everything: bool
) -> tuple[LiveView, dict[str, Copied]]:
    queued = list(oracle.retry_queue)
    holders = {trial.trial_id: tuner_id for tuner_id, trial in oracle.ongoing_trials.items()}
    wanted = set(oracle.trials) if everything else set(trial_ids)
    wanted.update(oracle.start_order[since_start:], oracle.end_order[since_end:], holders, queued)
    trials: dict[str, Copied] = {}
    deadlines: dict[str, float] = {}
    for trial_id in wanted:
        trial = oracle.trials.get(trial_id)
        if trial is None:
            continue
        status: TrialStatus | None = "QUEUED" if trial_id in queued else None
        trials[trial_id] = oracle.book.copy(trial, status, holders.get(trial_id))
        deadline = oracle.leases.deadline(trial_id)
        if deadline is not None:
            deadlines[trial_id] = deadline
    view = LiveView(
        trials={},
        lease_deadlines=deadlines,
        holders=holders,
        queued=queued,
        waiting=set(oracle.tuner_ids),
        last_calls=oracle.leases.last_calls(),
        clock=oracle.leases.clock(),
        started=len(oracle.start_order),
        ended=list(oracle.end_order[since_end:]),
        progress=oracle.progress(),
    )
    return view, trials


def frozen_trials(oracle: FmtuneOracle) -> list[TrialRecord]:
    """Every trial, in the order of their ids (for results.json)."""
    _, copied = _copy(oracle, set(), 0, 0, everything=True)
    return [oracle.book.freeze(copied[trial_id]) for trial_id in sorted(copied, key=trial_key)]


def trial_key(trial_id: str) -> tuple[int, str]:
    """Trial ids in numeric order where they are numbers."""
    return (int(trial_id), trial_id) if trial_id.isdigit() else (1 << 62, trial_id)
