"""The whole pipeline with real processes: a coordinator, two workers, retrain and export."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fmtune import results

from .helpers import run

pytestmark = pytest.mark.timeout(600)

LOAD_AND_CHECK = r"""
import json, sys
import numpy as np, tensorflow as tf
from fmtune import data
path, data_dir = sys.argv[1], sys.argv[2]
fn = tf.saved_model.load(path).signatures["serving_default"]
(spec,) = fn.structured_input_signature[1].values()
test = data.load("synthetic", __import__("pathlib").Path(data_dir), download=False).test
out = fn(image=tf.constant(test.images))
print(json.dumps({
    "input": [spec.name, spec.dtype.name, spec.shape.as_list()],
    "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_outputs.items()},
    "accuracy": float(np.mean(out["class_id"].numpy() == test.labels)),
}))
"""


def test_bayesian_search_runs_exactly_max_trials(pipeline: tuple[Path, str]) -> None:
    workdir, _ = pipeline
    res = results.load(workdir / "runs" / "itest" / "results.json")
    assert res.algorithm == "bayesian" and len(res.trials) == 4
    assert sorted(t.trial_id for t in res.trials) == ["0", "1", "2", "3"]
    assert all(t.status == "COMPLETED" for t in res.trials)
    assert {t.worker for t in res.trials} <= {"tuner0", "tuner1"}
    for trial in res.trials:
        assert [h.epoch for h in trial.history] == [0, 1]
        assert trial.score == max(h.metrics["val_accuracy"] for h in trial.history)
        assert trial.seconds is not None and trial.seconds > 0
        assert "units_0" in trial.hyperparameters and "batch_size" in trial.hyperparameters
    best = max(res.trials, key=lambda t: t.score or 0)
    assert res.best_trial_id == best.trial_id and res.best_hyperparameters == best.hyperparameters
    assert res.retrain is not None and res.retrain.hyperparameters == best.hyperparameters
    assert res.test_accuracy == res.retrain.test_accuracy
    assert res.test_accuracy is not None and res.test_accuracy > 0.5  # chance is 0.1


def test_config_precedence(pipeline: tuple[Path, str], synthetic_dir: Path) -> None:
    """Flag over environment over file over preset, in the coordinator's and the workers' own
    processes: each logs the digest of the config it loaded, and the children inherited an
    environment that disagrees with the flags."""
    from fmtune import config

    from .conftest import LAYERED_ENV
    from .helpers import TINY

    workdir, out = pipeline
    expected = config.load(
        "quick",
        workdir / "layer.yaml",
        [*TINY, "search.algorithm=bayesian"],
        environ=LAYERED_ENV,
        flags={
            "data_dir": synthetic_dir.parent,
            "workdir": workdir / "runs",
            "model_repo": workdir / "models",
            "name": "itest",
            "search.max_trials": 4,
        },
    )
    assert (expected.search.max_trials, expected.seed, expected.search.epochs) == (4, 11, 2)
    digests = dict(re.findall(r"\[(coordinator|tuner\d)\] .*\(config ([0-9a-f]{16})\)", out))
    assert digests == {name: expected.digest() for name in ("coordinator", "tuner0", "tuner1")}, out[-3000:]
    assert re.search(r"\[coordinator\] .*search over mlp, 4 trials", out)
    assert config.load_resolved(workdir / "runs" / "itest" / "config.yaml") == expected


def test_running_the_same_experiment_again_changes_nothing(pipeline: tuple[Path, str]) -> None:
    from .conftest import LAYERED_ENV

    workdir, _ = pipeline
    record = workdir / "runs" / "itest" / "results.json"
    before = record.read_bytes()
    versions = sorted(p.name for p in (workdir / "models" / "fmtune").iterdir())
    done = run(json.loads((workdir / "argv.json").read_text()), workdir, extra_env=LAYERED_ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "already ran to the end with this config" in done.stdout
    assert "the search is already over" in done.stdout  # the workers left at once
    assert record.read_bytes() == before
    assert sorted(p.name for p in (workdir / "models" / "fmtune").iterdir()) == versions


def test_logs_show_trials_on_workers_and_coordinator(pipeline: tuple[Path, str]) -> None:
    _, out = pipeline
    assert re.search(r"\[tuner[01]\] \S+ trial \d start: .*units_0=", out)
    assert re.search(r"\[tuner[01]\] \S+ trial \d epoch 2/2: .*val_accuracy=[01]\.\d{4}", out)
    assert re.search(r"\[tuner[01]\] \S+ trial \d end: COMPLETED", out)
    for done in range(1, 5):
        assert re.search(
            rf"\[coordinator\] \S+ trial {done}/4 done: val_accuracy=[01]\.\d{{4}} \(best [01]\.\d{{4}}\) "
            r"\[trial \d on tuner[01], \d+s\]",
            out,
        )
    assert "absl::InitializeLog" not in out


def test_export_loads_in_a_fresh_process_with_the_contract(pipeline: tuple[Path, str], synthetic_dir: Path) -> None:
    workdir, _ = pipeline
    res = results.load(workdir / "runs" / "itest" / "results.json")
    assert res.exported_version == 1
    version_dir = workdir / "models" / "fmtune" / "1"
    assert Path(res.export_path or "") == version_dir.resolve()
    card = json.loads((version_dir / "fmtune.json").read_text())
    assert card["version"] == 1 and card["dataset"] == "synthetic" and len(card["class_names"]) == 10
    assert card["test_metrics"]["accuracy"] == pytest.approx(res.test_accuracy)
    done = subprocess.run(
        [sys.executable, "-c", LOAD_AND_CHECK, str(version_dir), str(synthetic_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    checked = json.loads(done.stdout.strip().splitlines()[-1])
    assert checked["input"] == ["image", "uint8", [None, 28, 28]]
    assert checked["outputs"] == {"probabilities": ["float32", [None, 10]], "class_id": ["int64", [None]]}
    # The number in results.json is the one the exported model really scores.
    assert checked["accuracy"] == pytest.approx(res.test_accuracy, abs=1e-6)


def test_results_command_prints_the_table(pipeline: tuple[Path, str]) -> None:
    workdir, _ = pipeline
    done = run([sys.executable, "-m", "fmtune", "results", str(workdir / "runs")], workdir)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if re.match(r"^│ +\d+ │", line)]
    assert len(rows) == 4
    scores = [float(re.findall(r"│ +([01]\.\d{4}) │", row)[0]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert "best trial" in done.stdout and "test accuracy" in done.stdout
