"""The interface every early-stopping rule implements."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Curve = Mapping[int, float]
"""A trial's objective by epoch (0-based), as its worker reported it."""


class Decision(enum.Enum):
    CONTINUE = "continue"
    STOP = "stop"


@dataclass(frozen=True)
class Cohort:
    """The other trials' curves when a trial reports: those that ran to their end, and all of them
    (running, stopped and failed ones too), each as reported so far."""

    completed: Sequence[Curve]
    everyone: Sequence[Curve]


class StoppingRule(ABC):
    """Decides, after each epoch a worker reports, whether its trial goes on.

    Rules see numbers only, never Keras Tuner's objects, and keep no state of their own beyond
    their settings: everything they need is in the curves, which the oracle saves, so a restarted
    coordinator decides exactly as the one before it.
    """

    @abstractmethod
    def on_result(self, curve: Curve, step: int, cohort: Cohort) -> Decision:
        """``curve`` is the running trial's objective so far, ``step`` the epoch just reported, and
        ``cohort`` the other trials."""

    def rung(self, epochs: int) -> int | None:
        """The highest rung a trial that ran ``epochs`` epochs reached, for rules that have rungs."""
        return None
