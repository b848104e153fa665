"""JSON log lines: one strict JSON object a line, with the context keys, whatever is logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fmtune import logs

KEYS = {"time", "level", "role", "experiment", "trial_id", "worker", "event", "logger"}


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    before = logs.bound()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("fmtune.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        logs.bind(**{key: before.get(key) for key in logs.bound()})


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_has_the_context_and_the_events_fields(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = capture
    logs.bind(role="worker", experiment="exp", worker="tuner0")
    logger.info("before any trial")
    logs.bind(trial_id="3")
    logger.info("trial %s epoch %d", "3", 1, extra={"epoch": 1, "metrics": {"val_accuracy": 0.5, "loss": float("nan")}})
    logger.info("on the coordinator", extra=logs.trial_fields("7", "tuner1", status="COMPLETED"))
    first, epoch, other = lines(out)
    assert set(first) >= KEYS and first["trial_id"] is None and first["worker"] == "tuner0"
    assert first["role"] == "worker" and first["experiment"] == "exp" and first["level"] == "INFO"
    assert str(first["time"]).endswith("+00:00")
    assert epoch["event"] == "trial 3 epoch 1" and epoch["trial_id"] == "3"
    assert epoch["epoch"] == 1 and epoch["metrics"] == {"val_accuracy": 0.5, "loss": None}  # NaN is not JSON
    assert other["trial_id"] == "7" and other["worker"] == "tuner1" and other["status"] == "COMPLETED"


def test_an_exception_is_one_line(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = capture
    try:
        raise ValueError("bad units")
    except ValueError:
        logger.exception("trial failed")
    (line,) = lines(out)
    assert line["level"] == "ERROR" and "ValueError: bad units" in str(line["exception"])


def test_another_process_line_is_kept_or_wrapped() -> None:
    own = logs.line({"time": "t", "level": "INFO", "event": "x", "role": "worker"})
    assert logs.as_json_line(own + "\n") == own
    wrapped = json.loads(logs.as_json_line("Traceback (most recent call last):", role="worker", worker="tuner0"))
    assert KEYS - {"logger"} <= set(wrapped) and wrapped["worker"] == "tuner0"
    assert wrapped["event"] == "Traceback (most recent call last):"
    assert json.loads(logs.as_json_line("{not json"))["event"] == "{not json"


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(
    message=st.text(),
    extra=st.dictionaries(st.sampled_from(["epoch", "metrics", "trial_id", "worker", "note", "status"]), values),
)
def test_anything_logged_is_one_strict_json_line(message: str, extra: dict[str, object]) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    record = logging.LogRecord("fmtune", logging.WARNING, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    handler.emit(record)
    text = out.getvalue()
    assert text.count("\n") == 1  # newlines inside the message are escaped
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert set(parsed) >= KEYS and parsed["event"] == message and parsed["level"] == "WARNING"
