"""How fmtune's processes log: text lines for a person (a terminal, ``kubectl logs``), or one JSON
object per line for a log pipeline (``--log-format json``).

A JSON line carries what a reader filters on (the time, the level, the process's role, the
experiment, the trial and the worker) beside the event and its fields. What holds for a whole
process (its role, the experiment, a worker's id, the trial a worker runs now) is bound once with
``bind``; a log call adds its own fields with ``extra=`` (``trial_fields``), and these win.

The formatter is the standard library's ``logging.Formatter`` with a ``format`` of about twenty
lines: a JSON logging library would add a dependency to every role's install for no more than that.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
FORMAT_ENV = "FMTUNE_LOG_FORMAT"  # the format, handed down to the processes a command starts
CONTEXT_KEYS = ("role", "experiment", "trial_id", "worker")
# A record's own attributes; any other one came from a call's ``extra=`` and is an event field.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

# Replaced whole, never changed in place, so that a formatter on any thread reads a consistent one.
_bound: dict[str, Any] = {}


def bind(**fields: Any) -> None:
    """Fields of every line from now on (None: no value, as before anything was bound)."""
    global _bound
    _bound = {**_bound, **fields}


def bound() -> dict[str, Any]:
    return dict(_bound)


def trial_fields(trial_id: str | None, worker: str | None = None, **fields: Any) -> dict[str, Any]:
    """``extra=`` for a log call about one trial.

    >>> trial_fields("3", "tuner0", epoch=2)
    {'trial_id': '3', 'worker': 'tuner0', 'epoch': 2}
    """
    out: dict[str, Any] = {"trial_id": trial_id}
    if worker is not None:
        out["worker"] = worker
    return {**out, **fields}


def plain(value: Any) -> Any:
    """``value`` as strict JSON can hold it: non-finite floats become null, other objects their text.

    >>> plain({"loss": float("nan"), "acc": 0.9, "shape": (28, 28)})
    {'loss': None, 'acc': 0.9, 'shape': [28, 28]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        try:
            return plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def line(fields: dict[str, Any]) -> str:
    """One JSON line: the time, level, context and event first, then the event's fields."""
    head = {"time": None, "level": None, **dict.fromkeys(CONTEXT_KEYS), "event": None}
    return json.dumps(plain({**head, **fields}), ensure_ascii=False, allow_nan=False)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            **_bound,
            "event": record.getMessage(),
            "logger": record.name,
        }
        fields.update((k, v) for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_"))
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return line(fields)


def as_json_line(text: str, **fields: Any) -> str:
    """A line of another process's output as a JSON line: unchanged if it is one already (it
    carries its own context), else wrapped as an event with ``fields``."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            if isinstance(json.loads(stripped), dict):
                return stripped
        except ValueError:
            pass
    return line({"time": now(), "level": "INFO", **_bound, **fields, "event": stripped})
