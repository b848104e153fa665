"""The coordinator: serves the Keras Tuner oracle to workers, then retrains, evaluates and exports.

The oracle is Keras Tuner's own, served through its own gRPC protocol; the serving loop is
fmtune's, so that the coordinator notices the end of the search within a poll rather than Keras
Tuner's 20 seconds, takes back the trials of silent workers, and records where the run is in
state.json (``fmtune.run_state``).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from fmtune import data, export, results, run_state, training
from fmtune.config import ExperimentConfig
from fmtune.dashboard import server as dashboard_server
from fmtune.export import ModelCard, publish
from fmtune.layout import ExperimentDir, adopt_own_files
from fmtune.results import Results
from fmtune.run.budget import Budget, first_epoch_costs, retrain_epoch_scale, trial_epoch_costs
from fmtune.run.budget import started_at as budget_start
from fmtune.run.state_writer import StateWriter
from fmtune.run.tracking import tracked
from fmtune.run.tuner import FmtuneTuner
from fmtune.run_state import Phase
from fmtune.trials import Epoch
from fmtune.tuning import auth, kt_internals, servicer
from fmtune.tuning.bookkeeping import active_values, wall
from fmtune.tuning.live_view import frozen_trials
from fmtune.tuning.oracle import FmtuneOracle
from fmtune.tuning.roles import Role

log = logging.getLogger("fmtune")
POLL_SECONDS = 0.1


class SearchError(RuntimeError):
    """The search could not produce a usable best trial."""


def serve_oracle(
    oracle: FmtuneOracle,
    role: Role,
    token: str,
    state: StateWriter | None = None,
    fixed_space: bool = True,
    metrics: CollectorRegistry | None = None,
) -> None:
    """Serve until the search is over and every worker has been told so, reaping silent workers,
    and stopping the search when no worker comes for ``worker_wait_seconds``."""
    # What is loaded by now (TensorFlow and Keras: millions of objects) is never garbage: frozen,
    # it is not walked by every older-generation collection.
    gc.freeze()
    wait = oracle.tolerance.worker_wait_seconds
    oracle.start_background()
    server, creators = None, None
    try:
        server, creators = servicer.start(oracle, role.address, token, fixed_space, metrics)
        log.info(
            "oracle listening on %s (%s, %s trials), for callers with the experiment's token",
            role.address,
            type(oracle).__name__,
            oracle.max_trials,
        )
        while not oracle.serving_done():
            oracle.reap()
            if not oracle.ongoing_trials and not oracle.search_over() and oracle.leases.quiet_for() > wait:
                oracle.abort(
                    f"no worker has asked for a trial in {wait:g}s while trials remain "
                    "(fault_tolerance.worker_wait_seconds): are the workers running?"
                )
            if state is not None:
                state.update()
            time.sleep(POLL_SECONDS)
    finally:
        if server is not None:
            server.stop(grace=1)
        if creators is not None:
            creators.shutdown(wait=False, cancel_futures=True)
        oracle.stop_background()
        oracle.log_ended()


def finished_before(cfg: ExperimentConfig) -> Results | None:
    """The results of an earlier run of this config that exported its model: running it again (a
    restarted pod, an upgrade that changed nothing, or only how faults are handled) must not
    retrain and publish again. Found under an equivalent config, they are recorded as this one's."""
    path = ExperimentDir(cfg.experiment_dir).results
    try:
        previous = results.load(path) if path.is_file() else None
    except (OSError, ValueError):
        return None
    if previous is None or previous.exported_version is None:
        return None
    if previous.config_digest == cfg.digest():
        return previous
    if previous.outcome_digest != cfg.outcome_digest():
        return None
    previous = previous.model_copy(update={"config_digest": cfg.digest()})
    results.save(previous, cfg.experiment_dir)
    return previous


def run(
    cfg: ExperimentConfig,
    role: Role,
    *,
    retrain: bool = True,
    deploy: Path | None = None,
    dataset: data.Dataset | None = None,
    trial_threads: int = 0,
) -> Results:
    """Search, then (unless told not to) retrain the best trial, evaluate and export it
    (``dataset``: the experiment's, if already loaded; ``trial_threads``: each worker's
    TensorFlow threads, 0 if as many as this process has)."""
    kt_internals.install()
    experiment = ExperimentDir(cfg.experiment_dir)
    for name in adopt_own_files(experiment):  # left beside the workers' files by an earlier version
        log.warning("copied %s of %s into %s, apart from the workers' files", name, cfg.name, experiment.own)
    dataset = dataset or cfg.load_dataset()
    log.info(
        "coordinator: experiment %s (config %s), %s from %s, %s search over %s, %d trials",
        cfg.name,
        cfg.digest(),
        cfg.dataset_name,
        dataset.source,
        cfg.search.algorithm,
        cfg.search.model,
        cfg.search.max_trials,
    )
    earlier = run_state.load(cfg.experiment_dir)
    if earlier is not None and earlier.data_fingerprint not in (None, dataset.fingerprint):
        raise SearchError(
            f"the data changed since experiment {cfg.name} began (fingerprint {earlier.data_fingerprint[:12]} "
            f"then, {dataset.fingerprint[:12]} now): start it afresh (--fresh) or under another --name"
        )
    started_at = budget_start(experiment.budget, cfg.outcome_digest())
    tuner = FmtuneTuner(cfg, dataset, experiment.oracle)
    oracle: FmtuneOracle = tuner.oracle
    oracle.verbose = 0
    budget = None
    if cfg.budget_minutes is not None:
        budget = Budget(
            cfg.budget_minutes * 60,
            started_at,
            cfg.retrain.budget_share,
            cfg.retrain.min_epochs,
            cfg.retrain.max_epochs,
            epoch_costs=trial_epoch_costs(oracle.book),
            epoch_scale=retrain_epoch_scale(cfg, dataset, tuner.hypermodel, trial_threads),
            first_epochs=first_epoch_costs(oracle.book),
        )
        oracle.control.search_open, oracle.control.starts_open = budget.search_open, budget.starts_open
        log.info(
            "budget: %.1f min from %s, %.1f min left; the search closes when only the reserve for retraining is left",
            cfg.budget_minutes,
            wall(started_at),
            budget.remaining() / 60,
        )
    tuner.save()
    state = StateWriter(cfg, oracle, budget, dataset.fingerprint, deploys=deploy is not None)
    # The tracker (MLflow, when set) watches state.json and results.json from its own thread.
    with dashboard_server.for_coordinator(cfg.experiment_dir) as dashboard, tracked(cfg):
        metrics = dashboard.metrics if dashboard is not None else None  # served at the dashboard's /metrics
        try:
            return _run(cfg, role, dataset, oracle, budget, state, retrain, deploy, started_at, metrics)
        except BaseException as exc:
            state.failed(exc)
            raise


def _run(
    cfg: ExperimentConfig,
    role: Role,
    dataset: data.Dataset,
    oracle: FmtuneOracle,
    budget: Budget | None,
    state: StateWriter,
    retrain: bool,
    deploy: Path | None,
    started_at: float,
    metrics: CollectorRegistry | None = None,
) -> Results:
    previous = finished_before(cfg)
    if previous is not None:
        log.info(
            "experiment %s already ran to the end with this config (or one that differs only in "
            "fault_tolerance): model %s version %d, test accuracy %.4f; "
            "nothing to do",
            cfg.name,
            cfg.model_name,
            previous.exported_version,
            previous.test_accuracy or float("nan"),
        )
        state.update(Phase.DONE, force=True)
        return previous
    state.update(Phase.SEARCH, force=True)
    started = time.monotonic()
    timing = {"startup": time.time() - started_at}
    if oracle.search_over():
        log.info("search already finished (%d trials); skipping to retraining", len(oracle.trials))
    else:
        # fmtune's families declare their whole space when built; a user's may add to it later.
        fixed = cfg.search.hypermodel is None
        token = auth.coordinator_token(cfg.experiment_dir)
        serve_oracle(oracle, role, token, state, fixed_space=fixed, metrics=metrics)
    tuning_seconds = time.monotonic() - started
    timing["search"] = tuning_seconds
    if budget is not None:
        estimate = budget.retrain_epoch_estimate()
        log.info(
            "search used %.1f of %.1f min; %.1f min left for retraining and export (an epoch: about %s)",
            budget.used() / 60,
            budget.seconds / 60,
            budget.remaining() / 60,
            "unknown" if estimate is None else f"{estimate:.0f}s",
        )

    best = oracle.get_best_trials(1)
    record = Results(
        experiment=cfg.name,
        dataset=cfg.dataset_name,
        family=cfg.search.model,
        algorithm=cfg.search.algorithm,
        objective=cfg.search.objective,
        max_trials=cfg.search.max_trials,
        config_digest=cfg.digest(),
        outcome_digest=cfg.outcome_digest(),
        seed=cfg.seed,
        data_fingerprint=dataset.fingerprint,
        trials=frozen_trials(oracle),
        best_trial_id=best[0].trial_id if best else None,
        best_hyperparameters=active_values(best[0].hyperparameters) if best else None,
        tuning_seconds=tuning_seconds,
        budget_minutes=cfg.budget_minutes,
        retrain_epoch_estimate=None if budget is None else budget.retrain_epoch_estimate(),
        timing=timing,
    )
    retraining = retrain and cfg.retrain.enabled
    abort_reason = oracle.control.abort_reason
    if retraining or abort_reason is not None or not best:  # else the final save below is next
        results.save(record, cfg.experiment_dir)
    counts = {s: sum(t.status == s for t in record.trials) for s in {t.status for t in record.trials}}
    log.info(
        "search done in %.0fs: %s", tuning_seconds, ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    )
    if abort_reason is not None:
        raise SearchError(f"search stopped: {abort_reason}; see results.json for every trial's error")
    if not best:
        raise SearchError("no trial completed, so there is nothing to retrain; see results.json for the errors")
    log.info("best trial %s: %s=%.4f", best[0].trial_id, cfg.search.objective.name, best[0].score)
    if retraining:
        state.update(Phase.RETRAIN)
        deadline = None if budget is None else budget.retrain_deadline
        record = retrain_and_export(
            cfg,
            record,
            dataset,
            deploy,
            on_export=lambda: state.update(Phase.EXPORT),
            deadline=deadline,
            on_epoch=state.retrain_epoch,
            on_deploy=lambda: state.update(Phase.DEPLOY),
        )
    record = record.model_copy(update={"timing": {**record.timing, "total": time.time() - started_at}})
    results.save(record, cfg.experiment_dir)
    log.info("where the time went: %s", ", ".join(f"{k} {v:.0f}s" for k, v in record.timing.items()))
    state.update(Phase.DONE)
    return record


def retrain_and_export(
    cfg: ExperimentConfig,
    record: Results,
    dataset: data.Dataset,
    deploy: Path | None = None,
    on_export: Callable[[], None] | None = None,
    deadline: float | None = None,
    on_epoch: Callable[[Epoch], None] | None = None,
    on_deploy: Callable[[], None] | None = None,
) -> Results:
    """Retrain the best trial, evaluate it, and export it: straight into the repository, or through
    the deployer (gate, publish, verify on every serving pod, roll back on failure). The callbacks
    hear of each retraining epoch, the export's start, and the deployer's (once the version is
    staged)."""
    assert record.best_hyperparameters is not None
    weights = training.best_trial_weights(cfg, record.best_trial_id)
    model, retrained = training.retrain(cfg, record.best_hyperparameters, dataset, deadline, on_epoch, weights)
    card = ModelCard(
        model_name=cfg.model_name,
        dataset=cfg.dataset_name,
        class_names=list(dataset.class_names),
        input_shape=list(dataset.input_shape),
        dark_background=dataset.dark_background,
        flip_invariant=dataset.flip_invariant,
        fingerprint=dataset.fingerprint,
        family=cfg.search.model,
        hyperparameters=record.best_hyperparameters,
        val_metrics=retrained.holdout_metrics,
        test_metrics={"accuracy": retrained.test_accuracy, "loss": retrained.test_loss},
        config_digest=cfg.digest(),
        experiment=cfg.name,
    )
    record = record.model_copy(update={"retrain": retrained, "test_accuracy": retrained.test_accuracy})
    results.save(record, cfg.experiment_dir)
    if on_export is not None:
        on_export()
    exporting = time.monotonic()
    warmup = dataset.test.images[: export.WARMUP_IMAGES]
    if deploy is None:
        version, path = publish(model, cfg.model_repo, card, warmup_images=warmup)
    else:
        from fmtune.deploy import SMOKE_IMAGES, DeployConfig, deploy_version

        images = dataset.test.images[:SMOKE_IMAGES]

        def staged() -> Path:
            path = export.stage(model, cfg.model_repo, card, warmup_images=warmup)
            if on_deploy is not None:
                on_deploy()
            return path

        version = deploy_version(
            DeployConfig.load(deploy),
            staged,
            card,
            images,
            model.predict(images, verbose=0),
        ).version
        path = cfg.model_repo / cfg.model_name / str(version)
    timing = {**record.timing, "retrain": retrained.seconds, "export": time.monotonic() - exporting}
    record = record.model_copy(
        update={"exported_version": version, "export_path": str(Path(path).resolve()), "timing": timing}
    )
    log.info("test accuracy %.4f; model %s version %d at %s", retrained.test_accuracy, cfg.model_name, version, path)
    return record
