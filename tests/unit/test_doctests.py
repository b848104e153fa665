"""The examples in the small modules' docstrings are run, so they stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "fmtune.spaces",
    "fmtune.text",
    "fmtune.logs",
    "fmtune.run.mlflow_mirror",
    "fmtune.pacing",
    "fmtune.trials",
    "fmtune.run.budget",
    "fmtune.tuning.leases",
    "fmtune.tuning.stopping.asha",
    "fmtune.tuning.stopping.median",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
