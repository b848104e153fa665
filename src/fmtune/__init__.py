"""fmtune: tune, train and serve Keras image classifiers with distributed Keras Tuner.

``fmtune.tune()`` runs the local pipeline from Python (a notebook); it is imported on first use, so
that ``import fmtune`` stays as light as the client needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fmtune.notebook import TuneError, TuneResult, tune

__version__ = "0.1.0"
__all__ = ["TuneError", "TuneResult", "__version__", "tune"]
_NOTEBOOK = frozenset({"tune", "TuneResult", "TuneError"})


def __getattr__(name: str) -> Any:
    if name in _NOTEBOOK:
        from fmtune import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'fmtune' has no attribute '{name}'")
