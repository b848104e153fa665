"""Every document a user can write either validates or is refused with ConfigError: no other
exception, whatever its shape (property-based)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmtune import config
from fmtune.config import ConfigError

scalars = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=True) | st.text(max_size=12)
KEYS = st.sampled_from(
    [
        "name",
        "dataset",
        "seed",
        "val_fraction",
        "search",
        "retrain",
        "fault_tolerance",
        "family",
        "algorithm",
        "max_trials",
        "epochs",
        "hyperparameters",
        "units",
        "min",
        "max",
        "step",
        "sampling",
        "values",
        "value",
        "type",
        "augment",
        "median_stopping",
        "data_dir",
        "workdir",
        "objective",
        "direction",
    ]
) | st.text(max_size=8)
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5), max_leaves=30
)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.dictionaries(KEYS, documents, max_size=6))
def test_any_mapping_validates_or_raises_config_error(doc: dict) -> None:
    try:
        config.validate(doc)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(content=st.binary(max_size=200) | documents.map(lambda d: yaml.safe_dump(d).encode()))
def test_any_file_validates_or_raises_config_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.yaml"
        path.write_bytes(content)
        try:
            config.load("quick", path, environ={})
        except ConfigError as exc:
            assert exc.problems


@settings(max_examples=200, derandomize=True, deadline=None)
@given(key=st.text(min_size=1, max_size=20), value=st.text(max_size=20))
def test_any_override_validates_or_raises_config_error(key: str, value: str) -> None:
    for attempt in (
        lambda: config.load("quick", None, [f"{key}={value}"], environ={}),
        lambda: config.load("quick", environ={f"FMTUNE_{key.upper()}": value}),
    ):
        try:
            attempt()
        except ConfigError as exc:
            assert exc.problems
