"""How values read in log lines and tables: one place, so that every line says them the same way."""

from __future__ import annotations

from typing import Any


def format_values(values: dict[str, Any]) -> str:
    """Hyperparameter values, floats to four significant digits.

    >>> format_values({"units": 128, "learning_rate": 0.0012345})
    'units=128 learning_rate=0.001234'
    """
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def format_metrics(metrics: dict[str, Any]) -> str:
    """An epoch's metrics, without the learning rate a schedule logs beside them.

    >>> format_metrics({"val_accuracy": 0.91, "learning_rate": 0.001})
    'val_accuracy=0.9100'
    """
    return " ".join(f"{k}={float(v):.4f}" for k, v in metrics.items() if k != "learning_rate")


def last_line(message: str | None, default: str = "") -> str:
    """The last line of a message: where a traceback says what went wrong.

    >>> last_line("Traceback ...\\n  File x\\nValueError: bad units\\n")
    'ValueError: bad units'
    >>> last_line(None, "no message")
    'no message'
    """
    lines = (message or "").strip().splitlines()
    return lines[-1] if lines else default
