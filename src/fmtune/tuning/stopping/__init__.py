"""Rules that stop a running trial early, one per module, each behind ``StoppingRule``."""

from fmtune.tuning.stopping.asha import Asha
from fmtune.tuning.stopping.base import Cohort, Curve, Decision, StoppingRule
from fmtune.tuning.stopping.median import MedianStopping

__all__ = ["Asha", "Cohort", "Curve", "Decision", "MedianStopping", "StoppingRule"]
