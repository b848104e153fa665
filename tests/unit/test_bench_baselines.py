"""The accuracy bench's baselines (tests/bench/baselines.py): the centre of a space, Optuna's values
for Keras Tuner's hyperparameters, and (slow) both baselines end to end on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras_tuner as kt
import pytest

from tests.bench import baselines

from ..conftest import REPO_ROOT, SYNTHETIC, write_dataset


def space() -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.Choice("batch_size", [64, 128, 256])
    hp.Int("num_layers", 1, 3)
    with hp.conditional_scope("num_layers", [2, 3]):
        hp.Int("units_1", 32, 512, step=32)
    with hp.conditional_scope("num_layers", [3]):
        hp.Float("dropout_2", 0.0, 0.5, step=0.1)
    hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    hp.Fixed("optimizer", "adam")
    return hp


def test_the_centre_is_the_middle_of_every_range_and_only_active_values() -> None:
    values = baselines.fill(space(), baselines.centre)
    assert values["batch_size"] == 128 and values["num_layers"] == 2 and values["optimizer"] == "adam"
    assert values["units_1"] == 288  # (32 + 512) / 2 = 272, on the step grid from 32: 288 or 256
    assert values["learning_rate"] == pytest.approx(1e-3)  # the log-midpoint
    assert "dropout_2" not in values  # two layers: the third's dropout is not active


def test_optuna_samples_the_same_names_and_ranges() -> None:
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = baselines.fill(space(), lambda hp, t=trial: baselines.suggest(t, hp))
        assert values["batch_size"] in (64, 128, 256) and 1e-4 <= values["learning_rate"] <= 1e-2
        assert ("units_1" in values) == (values["num_layers"] >= 2)
        assert ("dropout_2" in values) == (values["num_layers"] == 3)
        assert set(trial.params) == set(values) - {"optimizer"}  # a fixed value is not Optuna's to choose
        study.tell(trial, 0.5)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("method", ["centre", "optuna"])
def test_each_baseline_runs_within_its_budget_on_tiny_data(method: str, tmp_path: Path) -> None:
    if method == "optuna":
        pytest.importorskip("optuna")
    data = write_dataset(tmp_path / "data" / SYNTHETIC, train=2000, test=200)
    out = tmp_path / "record.json"
    # A seed as large as fmtune draws them (up to 2**31): derived seeds must stay in numpy's range.
    argv = [sys.executable, "-m", "tests.bench.baselines", method, "--preset", "quick", "--seed", "2147483000"]
    argv += ["--out", str(out), "--data-dir", str(data.parent), "--set", f"dataset={SYNTHETIC}"]
    argv += ["--set", "budget_minutes=1.5", "--set", "retrain.min_epochs=1", "--set", "retrain.budget_share=0.3"]
    subprocess.run(argv, cwd=REPO_ROOT, check=True, timeout=500)
    record = json.loads(out.read_text())
    assert record["baseline"] == method and record["seed"] == 2147483000 and 0 <= record["test_accuracy"] <= 1
    assert record["wall_s"] <= 90 * 1.15 and record["retrain_epochs"] >= 1
    if method == "optuna":
        assert record["trials"] >= 2 and record["trial_epochs"] >= record["trials"]
