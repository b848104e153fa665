"""A worker: asks the coordinator for trials, trains them, and reports every epoch back."""

from __future__ import annotations

import logging
import os

from fmtune import devices, layout, run_state
from fmtune.config import ExperimentConfig
from fmtune.layout import ExperimentDir
from fmtune.run import experiment
from fmtune.tuning.roles import Role

log = logging.getLogger("fmtune")


def configure_devices(threads: int) -> None:
    """Size TensorFlow's thread pools (``threads``, or the container's CPU limit when 0) and check
    for a GPU the worker was told it has; must run before TensorFlow executes anything."""
    import tensorflow as tf

    threads = devices.tensorflow_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    gpus = tf.config.list_physical_devices("GPU")
    devices.check_gpu(gpus)
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)


def search_ended(cfg: ExperimentConfig) -> bool:
    """Whether the coordinator recorded that this experiment's search is over (state.json): a
    worker that starts, or loses its coordinator, after that has nothing left to do, rather than
    waiting for a chief that is gone. A search recorded under another config (an upgrade that
    asks for more trials, say) is not this one: its coordinator is asked instead."""
    state = run_state.load(cfg.experiment_dir)
    return state is not None and state.search_ended and state.config_digest == cfg.digest()


def run(cfg: ExperimentConfig, role: Role, threads: int = 0) -> None:
    """Run trials until the coordinator says the search is over. Unless the search is recorded as
    over already, the worker first checks that its config is the one the coordinator published for
    the experiment (``experiment.await_published``): ConfigMismatch if it is not, ConfigNotPublished
    if none comes within the coordinator's timeout."""
    if search_ended(cfg):
        log.info("worker %s: the search is already over (%s)", role.tuner_id, layout.STATE)
        return
    experiment.await_published(cfg)
    os.environ.update(role.env())  # Keras Tuner reads the contract when the tuner is built
    configure_devices(threads)
    from fmtune import training
    from fmtune.run.tuner import FmtuneTuner, fit_callbacks
    from fmtune.tuning import kt_internals
    from fmtune.tuning.oracle_client import CoordinatorUnreachable

    kt_internals.quiet_conditions()

    dataset = cfg.load_dataset()
    train = training.trial_split(cfg, dataset)
    log.info(
        "worker %s: coordinator %s, experiment %s (config %s), %s (%d train / %d val images), %s",
        role.tuner_id,
        role.address,
        cfg.name,
        cfg.digest(),
        cfg.dataset_name,
        len(train),
        len(dataset.val),
        devices.precision(cfg.search.precision) if cfg.search.hypermodel is None else "the model's own precision",
    )
    tuner = FmtuneTuner(cfg, dataset, ExperimentDir(cfg.experiment_dir).worker(role.tuner_id), checkpoints=True)
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
        if not search_ended(cfg):
            raise
        log.info("worker %s: the coordinator is gone and the search is over", role.tuner_id)
        return
    log.info("worker %s: the coordinator says the search is over", role.tuner_id)
