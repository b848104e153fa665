"""The two baselines fmtune's search is measured against, each under a preset's whole wall budget,
on the same machine, one at a time (tests/bench/accuracy.py runs them after the preset's runs).

- **centre** (no search): the middle of the preset's space (the middle choice of each
  hyperparameter, the midpoint of each range, the log-midpoint of a log range), trained with the
  preset's own retraining recipe (fmtune.training.retrain) for the whole budget: its epoch cap is
  lifted, so that the deadline alone decides how long it trains.
- **optuna** (a peer tuner): Optuna's TPE sampler with its Hyperband pruner (min 1, max
  ``search.epochs``, reduction factor as the preset's ASHA) over the same space, in ``--workers``
  processes sharing one journal file, each on its share of the cores as fmtune's workers are.
  Trials train as fmtune's do: the same trial subset, epochs, validation split and fit. The search
  closes by fmtune's own budget rule (``fmtune.run.budget.Budget``), from the epochs it measured;
  then the best trial is retrained with the preset's recipe for the time left (from its best
  epoch's weights where the recipe has ``warm_start``, as fmtune's).

Each writes one JSON record (``--out``): its test accuracy, where the time went, and its trials.

    python -m tests.bench.baselines centre --preset quick --seed 1 --out /tmp/centre.json
    python -m tests.bench.baselines optuna --preset quick --seed 1 --out /tmp/optuna.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fmtune import config
from fmtune.config import ExperimentConfig
from fmtune.tuning.centre import centre, fill
from tests.bench.host import cpu_model

UNCAPPED_EPOCHS = 1000  # the centre trains until its deadline, not to the preset's epoch cap


def load_config(preset: str, seed: int, data_dir: Path | None, sets: list[str]) -> ExperimentConfig:
    flags = {"seed": seed, "download": False, "data_dir": data_dir}
    return config.load(preset, None, sets, flags=flags)


def declared_space(cfg: ExperimentConfig, input_shape: Any, num_classes: int) -> Any:
    import keras_tuner as kt

    from fmtune.models import plugins

    space = kt.HyperParameters()
    plugins.for_search(cfg.search, input_shape, num_classes).build(space)
    return space


def retrain_for(
    cfg: ExperimentConfig, values: dict[str, Any], dataset: Any, deadline: float, weights: Path | None = None
) -> dict[str, Any]:
    from fmtune import training

    _, record = training.retrain(cfg, values, dataset, deadline=deadline, initial_weights=weights)
    return {
        "test_accuracy": record.test_accuracy,
        "retrain_epochs": record.epochs_run,
        "retrain_s": record.seconds,
        "retrain_epoch_seconds": record.epoch_seconds,
    }


def run_centre(args: argparse.Namespace, started: float) -> dict[str, Any]:
    from fmtune.run.budget import EXPORT_SECONDS

    cfg = load_config(args.preset, args.seed, args.data_dir, args.sets)
    cfg = cfg.model_copy(update={"retrain": cfg.retrain.model_copy(update={"max_epochs": UNCAPPED_EPOCHS})})
    dataset = cfg.load_dataset()
    values = fill(declared_space(cfg, dataset.input_shape, dataset.num_classes), centre)
    assert cfg.budget_minutes is not None
    deadline = started + cfg.budget_minutes * 60 - EXPORT_SECONDS
    print(f"centre of {cfg.search.model}: {values}", flush=True)
    return {"baseline": "centre", "hyperparameters": values, **retrain_for(cfg, values, dataset, deadline)}


# The Optuna peer: a parent that starts the workers, then retrains the best trial.


def suggest(trial: Any, hp: Any) -> Any:
    """Optuna's value for one Keras Tuner hyperparameter, under the same name and range."""
    kind = type(hp).__name__
    if kind == "Choice":
        return trial.suggest_categorical(hp.name, list(hp.values))
    if kind == "Fixed":
        return hp.value
    if kind == "Boolean":
        return trial.suggest_categorical(hp.name, [False, True])
    log = hp.sampling == "log"
    if kind == "Int":
        return trial.suggest_int(hp.name, hp.min_value, hp.max_value, step=1 if log else hp.step or 1, log=log)
    return trial.suggest_float(hp.name, hp.min_value, hp.max_value, step=None if log else hp.step, log=log)


def storage(path: Path) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def study(cfg: ExperimentConfig, path: Path, seed: int) -> Any:
    import optuna

    asha = cfg.search.asha
    return optuna.create_study(
        study_name="baseline",
        storage=storage(path),
        load_if_exists=True,
        direction="maximize" if cfg.search.objective.direction == "max" else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(
            min_resource=asha.grace_epochs, max_resource=cfg.search.epochs, reduction_factor=asha.reduction_factor
        ),
    )


def search_worker(args: argparse.Namespace, started: float) -> None:
    """One worker process: trials until the budget closes the search (fmtune's rule)."""
    import keras
    import optuna
    import tensorflow as tf

    from fmtune import devices, training
    from fmtune.models import plugins
    from fmtune.pacing import typical_epoch
    from fmtune.run.budget import Budget, retrain_epoch_scale

    threads = max(1, devices.tensorflow_threads() // args.workers)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = load_config(args.preset, args.seed, args.data_dir, args.sets)
    dataset = cfg.load_dataset()
    train = training.trial_split(cfg, dataset)
    space = declared_space(cfg, dataset.input_shape, dataset.num_classes)
    later_epochs: list[float] = []  # this worker's epochs after each trial's first, as fmtune's budget uses
    assert cfg.budget_minutes is not None
    budget = Budget(
        cfg.budget_minutes * 60,
        started,
        cfg.retrain.budget_share,
        cfg.retrain.min_epochs,
        cfg.retrain.max_epochs,
        epoch_costs=lambda: later_epochs,
        # as fmtune's coordinator scales it
        epoch_scale=retrain_epoch_scale(
            cfg, dataset, plugins.for_search(cfg.search, dataset.input_shape, dataset.num_classes), threads
        ),
    )
    name = cfg.search.objective.name
    the_study = study(cfg, args.journal, (args.seed * 1000 + args.worker) % 2**32)  # numpy's seeds are 32-bit

    class Report(keras.callbacks.Callback):
        def __init__(self, trial: Any):
            super().__init__()
            self.trial, self.began, self.epochs = trial, 0.0, 0
            self.pruned = False

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.began = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch > 0:
                later_epochs.append(time.monotonic() - self.began)
            self.epochs = epoch + 1
            self.trial.report(float((logs or {})[name]), epoch + 1)
            if self.trial.should_prune():
                self.pruned = self.model.stop_training = True
            elif not budget.search_open():  # what it reached counts, as in fmtune
                self.model.stop_training = True

    def objective(trial: Any) -> float:
        from fmtune.models.plugins import build_from_values

        values = fill(space, lambda hp: suggest(trial, hp))
        keras.utils.set_random_seed((args.seed * 1_000_003 + trial.number) % 2**31)
        model, hp = build_from_values(cfg.search, values, dataset.input_shape, dataset.num_classes)
        hypermodel = plugins.for_search(cfg.search, dataset.input_shape, dataset.num_classes)
        report = Report(trial)
        # Each trial's best epoch, for a retraining that starts from the best trial (retrain.warm_start).
        saved = keras.callbacks.ModelCheckpoint(
            str(trial_weights(args.journal, trial.number)),
            monitor=name,
            mode=cfg.search.objective.direction,
            save_best_only=True,
            save_weights_only=True,
        )
        history = hypermodel.fit(
            hp,
            model,
            train.images,
            train.labels,
            validation_data=(dataset.val.images, dataset.val.labels),
            epochs=cfg.search.epochs,
            callbacks=[report, saved],
            verbose=0,
        )
        scores = history.history[name]
        best = max(scores) if cfg.search.objective.direction == "max" else min(scores)
        trial.set_user_attr("epochs", report.epochs)
        print(
            f"worker {args.worker} trial {trial.number}: {values} -> {best:.4f} in {report.epochs} epochs"
            + (" (pruned)" if report.pruned else ""),
            flush=True,
        )
        if report.pruned:
            raise optuna.TrialPruned()
        return float(best)

    while budget.search_open():
        the_study.optimize(objective, n_trials=1)
    print(
        f"worker {args.worker}: search closed, an epoch of retraining estimated at "
        f"{typical_epoch(later_epochs) or 0:.1f}s x {budget.epoch_scale:.2f}",
        flush=True,
    )


def trial_weights(journal: Path, number: int) -> Path:
    return journal.with_name(f"{journal.stem}-trial{number}.weights.h5")


def run_optuna(args: argparse.Namespace, started: float) -> dict[str, Any]:
    import optuna

    from fmtune.run.budget import EXPORT_SECONDS

    journal = args.out.with_suffix(".journal")
    for stale in (journal, *journal.parent.glob(f"{journal.stem}-trial*.weights.h5")):
        stale.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "tests.bench.baselines", "worker", "--preset", args.preset, "--seed", str(args.seed)]
    argv += ["--workers", str(args.workers), "--journal", str(journal), "--started", repr(started)]
    argv += ["--data-dir", str(args.data_dir)] if args.data_dir else []
    argv += [arg for s in args.sets for arg in ("--set", s)]
    children = [subprocess.Popen([*argv, "--worker", str(i)]) for i in range(args.workers)]
    codes = [child.wait() for child in children]
    if any(codes):
        raise SystemExit(f"an Optuna worker exited with {codes}")
    search_s = time.time() - started
    cfg = load_config(args.preset, args.seed, args.data_dir, args.sets)
    done = optuna.load_study(study_name="baseline", storage=storage(journal))
    states = [t.state.name for t in done.trials]
    ended = sorted(
        ((t.datetime_complete.timestamp() - started) / 60, max(t.intermediate_values.values()))
        for t in done.trials
        if t.datetime_complete is not None and t.intermediate_values
    )
    if not any(t.state.name == "COMPLETE" for t in done.trials):
        raise SystemExit(f"no Optuna trial completed before the budget closed the search ({len(states)} began)")
    dataset = cfg.load_dataset()
    values = dict(done.best_trial.params)
    weights = trial_weights(journal, done.best_trial.number) if cfg.retrain.warm_start else None
    assert cfg.budget_minutes is not None
    deadline = started + cfg.budget_minutes * 60 - EXPORT_SECONDS
    return {
        "baseline": "optuna",
        "sampler": "TPESampler",
        "pruner": "HyperbandPruner",
        "hyperparameters": values,
        "best_val": done.best_value,
        "trials": len(states),
        "pruned": states.count("PRUNED"),
        "trial_epochs": sum(t.user_attrs.get("epochs", 0) for t in done.trials),
        "search_s": search_s,
        "trials_ended": ended,  # (minutes since start, its best validation score)
        **retrain_for(cfg, values, dataset, deadline, weights),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", choices=["centre", "optuna", "worker"])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("FMTUNE_DATA_DIR") or None)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="config overrides, as fmtune's")
    parser.add_argument("--journal", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    started = args.started or time.time()
    if args.baseline == "worker":
        search_worker(args, started)
        return
    record = run_centre(args, started) if args.baseline == "centre" else run_optuna(args, started)
    record |= {"preset": args.preset, "seed": args.seed, "wall_s": time.time() - started, "cpu": cpu_model()}
    args.out.write_text(json.dumps(record, indent=2))
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
