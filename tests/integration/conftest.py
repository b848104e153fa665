"""Session fixtures: one real pipeline run whose outputs several test modules read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Served, run, running_server, tiny_repo, tune_argv

# Every layer of the config is used, each overriding the one below it on some setting: the quick
# preset (epochs 8, seed 42), a file (max_trials 9, seed 7), the environment (max_trials 1,
# seed 11) and flags (--set search.epochs=2, --max-trials 4). See test_config_precedence.
LAYERED_FILE = "search:\n  max_trials: 9\nseed: 7\n"
LAYERED_ENV = {"FMTUNE_SEARCH__MAX_TRIALS": "1", "FMTUNE_SEED": "11"}


@pytest.fixture(scope="session")
def pipeline(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(workdir, output) of `fmtune tune` with a real coordinator and two workers on synthetic data."""
    workdir = tmp_path_factory.mktemp("pipeline")
    (workdir / "layer.yaml").write_text(LAYERED_FILE)
    argv = tune_argv(
        synthetic_dir, workdir, "--config", str(workdir / "layer.yaml"), "--set", "search.algorithm=bayesian", trials=4
    )
    (workdir / "argv.json").write_text(json.dumps(argv))
    done = run(argv, workdir, extra_env=LAYERED_ENV)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return workdir, done.stdout


@pytest.fixture(scope="session")
def tiny_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`fmtune serve --builtin` on loopback serving a tiny untrained MLP (no tuning run needed)."""
    with running_server(tiny_repo(tmp_path_factory.mktemp("tiny-serving"))) as server:
        yield server
