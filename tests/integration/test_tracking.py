"""Observing a run: JSON log lines from every process, and the run mirrored into a real MLflow
tracking server (one run per trial under one for the experiment); an unreachable server leaves the
search going, said once in the log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from fmtune import config, results
from fmtune.results import Results, RetrainRecord
from fmtune.run.mlflow_mirror import Mirror
from fmtune.run_state import BestPoint, Phase, RunState
from fmtune.trials import Epoch, TrialRecord

from .helpers import free_ports, run, tune_argv
from .mlflow_server import fields, history, mlflow_server, runs

pytestmark = pytest.mark.timeout(900)
KEYS = {"time", "level", "role", "experiment", "trial_id", "worker", "event"}
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


def epochs(*accuracies: float) -> list[Epoch]:
    return [Epoch(epoch=i, metrics={"val_accuracy": a, "loss": 1 - a}) for i, a in enumerate(accuracies)]


def trial(trial_id: str, status: str, worker: str | None, *accuracies: float, **more: object) -> TrialRecord:
    ended = more.pop("ended", status in ("COMPLETED", "STOPPED", "FAILED"))
    return TrialRecord.model_validate(
        {
            "trial_id": trial_id,
            "status": status,
            "worker": worker,
            "hyperparameters": {"units": 32 * (int(trial_id) + 1), "learning_rate": 0.01},
            "history": epochs(*accuracies),
            "epoch_seconds": [1.5] * len(accuracies),
            "started_at": T0 if worker else None,
            "ended_at": T0 + timedelta(seconds=30) if ended else None,
            **more,
        }
    )


def test_the_mirror_sends_each_trial_epoch_and_outcome_once(tracking_server: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    cfg = config.load("quick", None, [f"workdir={tmp_path}", "name=mirrored", "budget_minutes=null"], environ={})
    state = RunState(experiment=cfg.name, config_digest=cfg.digest(), max_trials=3, objective="val_accuracy")
    mirror = Mirror(MlflowClient(tracking_server), cfg, tracking_server)
    mirror.sync(state.model_copy(update={"trials": [trial("0", "RUNNING", "tuner0", 0.5), trial("1", "QUEUED", None)]}))
    half = {r["info"]["run_name"] for r in runs(tracking_server, "mirrored")}
    assert half == {"mirrored", "trial 0"}  # a queued trial is not a run yet
    mirror.sync(
        state.model_copy(
            update={
                "trials": [
                    trial("0", "COMPLETED", "tuner0", 0.5, 0.7, score=0.7, best_epoch=1),
                    trial("1", "RUNNING", "tuner1", 0.4),
                ]
            }
        )
    )
    # A restarted coordinator: a new mirror goes on with the runs recorded in tracking.json.
    mirror = Mirror(MlflowClient(tracking_server), cfg, tracking_server)
    final = [
        trial("0", "COMPLETED", "tuner0", 0.5, 0.7, score=0.7, best_epoch=1),
        trial("1", "STOPPED", "tuner1", 0.4, 0.45, score=0.45, best_epoch=1, stopped_by="asha"),
        trial("2", "FAILED", "tuner0", message="ValueError: bad units"),
    ]
    retrain = RetrainRecord(
        hyperparameters={"units": 32},
        train_samples=500,
        holdout_samples=20,
        epochs_run=2,
        best_epoch=1,
        history=[Epoch(epoch=0, metrics={"loss": 0.9}), Epoch(epoch=1, metrics={"loss": 0.6})],
        holdout_metrics={"accuracy": 0.8},
        test_loss=0.55,
        test_accuracy=0.81,
        seconds=4.0,
    )
    res = Results(
        experiment=cfg.name,
        dataset="fashion_mnist",
        family="mlp",
        algorithm="bayesian",
        objective=cfg.search.objective,
        max_trials=3,
        config_digest=cfg.digest(),
        trials=final,
        best_trial_id="0",
        best_hyperparameters={"units": 32},
        tuning_seconds=60,
        retrain=retrain,
        test_accuracy=0.81,
        exported_version=3,
        export_path="/models/fmtune/3",
    )
    done = state.model_copy(
        update={"trials": final, "phase": Phase.DONE, "best_history": [BestPoint(at=T0, trial_id="0", score=0.7)]}
    )
    mirror.finish(done, res)
    mirror.finish(done, res)  # once ended, nothing more is sent

    every = runs(tracking_server, "mirrored")
    found = {r["info"]["run_name"]: r for r in every}
    assert set(found) == {"mirrored", "trial 0", "trial 1", "trial 2"} and len(every) == 4  # none made twice
    parent = found.pop("mirrored")
    for name, run_ in found.items():
        trial_id = name.split()[1]
        assert fields(run_, "tags")["mlflow.parentRunId"] == parent["info"]["run_id"]
        assert fields(run_, "params") == {"units": str(32 * (int(trial_id) + 1)), "learning_rate": "0.01"}
    statuses = {name: (r["info"]["status"], fields(r, "tags").get("fmtune.status")) for name, r in found.items()}
    assert statuses == {
        "trial 0": ("FINISHED", "COMPLETED"),
        "trial 1": ("KILLED", "STOPPED"),
        "trial 2": ("FAILED", "FAILED"),
    }
    assert fields(found["trial 1"], "tags")["fmtune.stopped_by"] == "asha"
    assert fields(found["trial 2"], "tags")["fmtune.message"] == "ValueError: bad units"
    # Every epoch once, across the restart: no point sent twice.
    assert history(tracking_server, found["trial 0"]["info"]["run_id"], "val_accuracy") == [(0, 0.5), (1, 0.7)]
    assert history(tracking_server, found["trial 1"]["info"]["run_id"], "val_accuracy") == [(0, 0.4), (1, 0.45)]
    assert fields(found["trial 0"], "metrics")["score"] == 0.7

    assert parent["info"]["status"] == "FINISHED"
    metrics, params, tags = (fields(parent, part) for part in ("metrics", "params", "tags"))
    assert metrics["test_accuracy"] == 0.81 and metrics["test_loss"] == 0.55 and metrics["best_score"] == 0.7
    assert history(tracking_server, parent["info"]["run_id"], "retrain_loss") == [(0, 0.9), (1, 0.6)]
    assert params["exported_version"] == "3" and params["model_name"] == cfg.model_name
    assert params["search.max_trials"] == str(cfg.search.max_trials)
    assert tags["fmtune.export_path"] == "/models/fmtune/3" and tags["fmtune.config_digest"] == cfg.digest()


def json_lines(stdout: str) -> list[dict[str, object]]:
    """Every line of the output as a JSON object (fails on the first one that is not)."""
    parsed = []
    for number, line in enumerate(stdout.splitlines(), 1):
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
        assert isinstance(value, dict) and set(value) >= KEYS, line
        parsed.append(value)
    return parsed


def test_a_tiny_run_logs_json_lines_and_is_tracked(tracking_server: str, synthetic_dir: Path, tmp_path: Path) -> None:
    argv = tune_argv(synthetic_dir, tmp_path, "--set", "search.algorithm=random", trials=3, workers=2)
    argv += ["--log-format", "json", "--set", f"tracking.mlflow_uri={tracking_server}"]
    argv += ["--set", "tracking.experiment=tiny-tracked", "--set", "tracking.sync_seconds=0.5"]
    done = run(argv, tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    lines = json_lines(done.stdout)
    assert {line["role"] for line in lines} >= {"launcher", "coordinator", "worker"}
    # The coordinator and the workers wrote JSON themselves (as in a pod), the launcher only passed it on.
    assert all("logger" in line for line in lines if line["role"] != "launcher"), [
        line for line in lines if "logger" not in line
    ][:5]
    assert {line["experiment"] for line in lines} == {"itest"}
    epoch_lines = [line for line in lines if line["role"] == "worker" and "epoch" in line]
    assert epoch_lines and all(line["trial_id"] is not None and line["worker"] for line in epoch_lines)
    assert all("val_accuracy" in line["metrics"] for line in epoch_lines)  # type: ignore[operator]
    started = [line for line in lines if line["role"] == "coordinator" and " started on " in str(line["event"])]
    assert sorted(str(line["trial_id"]) for line in started) == ["0", "1", "2"]
    assert all(line["worker"] in ("tuner0", "tuner1") for line in started)

    res = results.load(tmp_path / "runs" / "itest" / "results.json")
    found = {r["info"]["run_name"]: r for r in runs(tracking_server, "tiny-tracked")}
    parent = found.pop("itest")
    assert set(found) == {f"trial {t.trial_id}" for t in res.trials}
    for record in res.trials:
        run_ = found[f"trial {record.trial_id}"]
        assert fields(run_, "params") == {k: str(v) for k, v in record.hyperparameters.items()}
        assert run_["info"]["status"] == "FINISHED" and fields(run_, "tags")["fmtune.worker"] == record.worker
        points = history(tracking_server, run_["info"]["run_id"], "val_accuracy")
        assert points == [(e.epoch, pytest.approx(e.metrics["val_accuracy"])) for e in record.history]
    assert parent["info"]["status"] == "FINISHED"
    assert fields(parent, "metrics")["test_accuracy"] == pytest.approx(res.test_accuracy)
    assert fields(parent, "params")["exported_version"] == str(res.exported_version)


@pytest.mark.slow  # a whole run; tests/unit/test_tracking.py sends to a closed port with the real client
def test_an_unreachable_tracking_server_leaves_the_search_going(synthetic_dir: Path, tmp_path: Path) -> None:
    (port,) = free_ports(1)  # nothing listens there
    argv = tune_argv(synthetic_dir, tmp_path, "--set", "search.algorithm=random", trials=2, workers=1)
    done = run(argv, tmp_path, timeout=600, extra_env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    said = re.findall(r"MLflow tracking at \S+ is unreachable", done.stdout)
    assert len(said) == 1, done.stdout[-4000:]
    assert not re.search(r"Retrying|urllib3|Traceback", done.stdout), done.stdout[-4000:]
    res = results.load(tmp_path / "runs" / "itest" / "results.json")
    assert len(res.trials) == 2 and res.exported_version is not None
