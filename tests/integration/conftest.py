"""Session fixtures: one real pipeline run whose outputs several test modules read."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import run, tune_argv


@pytest.fixture(scope="session")
def pipeline(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(workdir, output) of `fmtune tune` with a real coordinator and two workers on synthetic data."""
    workdir = tmp_path_factory.mktemp("pipeline")
    argv = tune_argv(synthetic_dir, workdir, "--set", "search.algorithm=bayesian", trials=4)
    done = run(argv, workdir)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return workdir, done.stdout
