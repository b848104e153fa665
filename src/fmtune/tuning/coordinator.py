"""The coordinator: serves the Keras Tuner oracle to workers, then retrains, evaluates and exports.

The oracle is Keras Tuner's own, served through its own gRPC servicer; only the serving loop is
ours, so that the coordinator notices the end of the search in well under a second rather than
Keras Tuner's 20-second poll.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fmtune import data, results
from fmtune.config import ExperimentConfig
from fmtune.export import ModelCard, publish
from fmtune.results import EpochMetrics, Results, TrialRecord
from fmtune.tuning.oracle import active_values
from fmtune.tuning.roles import Role
from fmtune.tuning.service import serve_oracle
from fmtune.tuning.tuner import FmtuneTuner

log = logging.getLogger("fmtune")


class SearchError(RuntimeError):
    """The search could not produce a usable best trial."""


def _search_finished(oracle: Any) -> bool:
    """True when a resumed search has nothing left to hand out or wait for."""
    return oracle.abort_reason is not None or (
        oracle.max_trials is not None
        and len(oracle.trials) >= oracle.max_trials
        and not oracle.ongoing_trials
        and not oracle._retry_queue
    )


def _timestamp(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value else None


def trial_records(oracle: Any) -> list[TrialRecord]:
    records = []
    for trial_id, trial in sorted(oracle.trials.items()):
        per_step: dict[int, dict[str, float]] = {}
        for name, history in trial.metrics.metrics.items():
            for obs in history.get_history():
                per_step.setdefault(int(obs.step), {})[name] = float(obs.mean())
        meta = oracle.record.get(trial_id, {})
        started, ended = meta.get("started"), meta.get("ended")
        records.append(
            TrialRecord(
                trial_id=trial_id,
                status=trial.status,
                worker=meta.get("worker"),
                hyperparameters=active_values(trial.hyperparameters),
                score=None if trial.score is None else float(trial.score),
                best_epoch=trial.best_step,
                history=[EpochMetrics(epoch=s, metrics=m) for s, m in sorted(per_step.items())],
                seconds=(ended - started) if started and ended else None,
                started_at=_timestamp(started),
                ended_at=_timestamp(ended),
                message=trial.message,
            )
        )
    return records


def run(cfg: ExperimentConfig, role: Role, *, retrain: bool = True, deploy: Path | None = None) -> Results:
    """Search, then (unless told not to) retrain the best trial, evaluate and export it."""
    experiment_dir = cfg.experiment_dir
    dataset = data.load(cfg.dataset, cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed, download=cfg.download)
    log.info(
        "coordinator: experiment %s, %s from %s, %s search over %s, %d trials",
        cfg.name,
        cfg.dataset,
        dataset.source,
        cfg.search.algorithm,
        cfg.search.family,
        cfg.search.max_trials,
    )
    tuner = FmtuneTuner(cfg, experiment_dir / "oracle")
    oracle = tuner.oracle
    oracle.verbose = 0
    tuner.save()
    started = time.monotonic()
    if _search_finished(oracle):
        log.info("search already finished (%d trials); skipping to retraining", len(oracle.trials))
    else:
        serve_oracle(oracle, role)
    tuning_seconds = time.monotonic() - started

    best = oracle.get_best_trials(1)
    record = Results(
        experiment=cfg.name,
        dataset=cfg.dataset,
        family=cfg.search.family,
        algorithm=cfg.search.algorithm,
        objective=cfg.search.objective,
        max_trials=cfg.search.max_trials,
        config_digest=cfg.digest(),
        trials=trial_records(oracle),
        best_trial_id=best[0].trial_id if best else None,
        best_hyperparameters=active_values(best[0].hyperparameters) if best else None,
        tuning_seconds=tuning_seconds,
    )
    results.save(record, experiment_dir)
    counts = {s: sum(t.status == s for t in record.trials) for s in {t.status for t in record.trials}}
    log.info(
        "search done in %.0fs: %s", tuning_seconds, ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    )
    if oracle.abort_reason is not None:
        raise SearchError(f"search stopped: {oracle.abort_reason}; see results.json for every trial's error")
    if not best:
        raise SearchError("no trial completed, so there is nothing to retrain; see results.json for the errors")
    log.info("best trial %s: %s=%.4f", best[0].trial_id, cfg.search.objective.name, best[0].score)
    if retrain and cfg.retrain.enabled:
        record = retrain_and_export(cfg, record, dataset, deploy)
    return record


def retrain_and_export(
    cfg: ExperimentConfig, record: Results, dataset: data.Dataset, deploy: Path | None = None
) -> Results:
    """Retrain the best trial, evaluate it, and export it: straight into the repository, or through
    the deployer (gate, publish, verify on every serving pod, roll back on failure)."""
    from fmtune import export
    from fmtune.training import retrain

    assert record.best_hyperparameters is not None
    model, retrained = retrain(cfg, record.best_hyperparameters, dataset)
    card = ModelCard(
        model_name=cfg.model_name,
        dataset=cfg.dataset,
        class_names=list(dataset.spec.class_names),
        family=cfg.search.family,
        hyperparameters=record.best_hyperparameters,
        val_metrics=retrained.holdout_metrics,
        test_metrics={"accuracy": retrained.test_accuracy, "loss": retrained.test_loss},
        config_digest=cfg.digest(),
        experiment=cfg.name,
    )
    record = record.model_copy(update={"retrain": retrained, "test_accuracy": retrained.test_accuracy})
    results.save(record, cfg.experiment_dir)
    if deploy is None:
        version, path = publish(model, cfg.model_repo, card)
    else:
        from fmtune.deploy import DeployConfig, Deployer, GrpcServingCheck, KubernetesCluster

        deploy_cfg = DeployConfig.load(deploy)
        staging = export.stage(model, cfg.model_repo, cfg.model_name)
        images = dataset.test.images[:32]
        deployer = Deployer(deploy_cfg, KubernetesCluster(deploy_cfg), GrpcServingCheck(cfg.model_name))
        version = deployer.deploy(staging, card, images, model.predict(images, verbose=0)).version
        path = cfg.model_repo / cfg.model_name / str(version)
    record = record.model_copy(update={"exported_version": version, "export_path": str(Path(path).resolve())})
    results.save(record, cfg.experiment_dir)
    log.info("test accuracy %.4f; model %s version %d at %s", retrained.test_accuracy, cfg.model_name, version, path)
    return record
