"""How values read in log lines and tables: one place, so that every line says them the same way."""

from __future__ import annotations

import re
from typing import Any

# Keras wraps an error in a preamble and a list of the call's arguments, and bolds the message.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_KERAS_BOLD = re.compile(r"\x1b\[1m(.*?)\x1b\[0m", re.DOTALL)
_ARRAY_DUMP = re.compile(r"\[[\[\]\d.,eE+\-\s]*\]\]")
MAX_REASON = 300


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


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, however long or decorated the message (Keras's are several
    lines with the input's values in them): the error line must fit a terminal and a log line.

    >>> one_line(ValueError("Exception encountered.\\n\\n\\x1b[1mbad [[0. 0.]]] shape\\x1b[0m\\n\\nArguments..."))
    'ValueError: bad ... shape'
    """
    text = str(exc)
    bold = _KERAS_BOLD.search(text)
    text = _ARRAY_DUMP.sub("...", _ANSI.sub("", bold.group(1) if bold else text))
    text = " ".join(text.split())
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_duration(text: str) -> float:
    """Minutes from ``90s``, ``45m``, ``1.5h`` or a bare number of minutes.

    >>> parse_duration("1h"), parse_duration("90s"), parse_duration("4")
    (60.0, 1.5, 4.0)
    """
    units = {"s": 1 / 60, "m": 1.0, "h": 60.0}
    raw = text.strip().lower()
    scale = units.get(raw[-1:])
    number = raw[:-1] if scale is not None else raw
    try:
        minutes = float(number) * (scale or 1.0)
    except ValueError:
        raise ValueError(f"'{text}' is not a duration such as 45m, 1.5h or 90s") from None
    if not minutes > 0 or minutes == float("inf"):
        raise ValueError(f"'{text}' is not a positive duration")
    return minutes
