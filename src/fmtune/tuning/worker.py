"""A worker: asks the coordinator for trials, trains them, and reports every epoch back."""

from __future__ import annotations

import logging
import os

from fmtune import data
from fmtune.config import ExperimentConfig
from fmtune.results import RESULTS_FILE
from fmtune.tuning.roles import Role

log = logging.getLogger("fmtune")


def limit_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools (must run before TF executes anything)."""
    import tensorflow as tf

    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)


def training_split(cfg: ExperimentConfig, dataset: data.Dataset) -> data.Split:
    """The train split, or a stratified subset of it when trials are meant to be cheap."""
    wanted = cfg.search.train_samples
    if wanted is None or wanted >= len(dataset.train):
        return dataset.train
    _, subset = data.stratified_split(dataset.train.labels, wanted / len(dataset.train), cfg.seed + 2)
    return dataset.train.subset(subset)


def search_over(cfg: ExperimentConfig) -> bool:
    """The coordinator writes results.json when the search ends: a worker that starts (or loses the
    coordinator) after that has nothing left to do, rather than waiting for a chief that is gone."""
    return (cfg.experiment_dir / RESULTS_FILE).is_file()


def run(cfg: ExperimentConfig, role: Role, threads: int = 0) -> None:
    if search_over(cfg):
        log.info("worker %s: the search is already over (%s exists)", role.tuner_id, RESULTS_FILE)
        return
    os.environ.update(role.env())  # Keras Tuner reads the contract when the tuner is built
    limit_threads(threads)
    from fmtune.tuning.service import CoordinatorUnreachable
    from fmtune.tuning.tuner import FmtuneTuner, fit_callbacks

    dataset = data.load(cfg.dataset, cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed, download=cfg.download)
    train = training_split(cfg, dataset)
    log.info(
        "worker %s: coordinator %s, %s (%d train / %d val images)",
        role.tuner_id,
        role.address,
        cfg.dataset,
        len(train),
        len(dataset.val),
    )
    workers_dir = cfg.experiment_dir / "workers"
    tuner = FmtuneTuner(cfg, workers_dir / role.tuner_id, checkpoint_root=workers_dir)
    try:
        tuner.search(
            train.images,
            train.labels,
            validation_data=(dataset.val.images, dataset.val.labels),
            epochs=cfg.search.epochs,
            callbacks=fit_callbacks(cfg),
            verbose=0,
        )
    except CoordinatorUnreachable:
        if not search_over(cfg):
            raise
        log.info("worker %s: the coordinator is gone and the search is over", role.tuner_id)
        return
    log.info("worker %s: the coordinator says the search is over", role.tuner_id)
