"""Vanilla Keras Tuner under a wall budget: the baseline that the accuracy benchmark sets beside fmtune.

`RandomSearch` (KT's `Tuner` with its `RandomSearchOracle`) over seed 002's space, the way a user
would run it by hand: two conv layers (filters 32-128 in steps of 32, kernel 3 or 5, each followed
by 2x2 max pooling), a dense layer of 32-128 units, Adam with learning rate 1e-2 or 1e-3, and one L2
factor for every layer, log-uniform in 1e-5..1e-2. Training data is split 90/10 into train and
validation (fmtune's stratified split, seed 42); every trial trains for 5 epochs at batch size 128
with Keras' EarlyStopping on val_loss, patience 2; the objective is val_accuracy.

One process on all cores (TensorFlow's thread pools sized to the core count). The budget covers
everything from the start of this module to the end of the test evaluation:
- no new trial starts when less than a typical epoch is left before the search deadline (except the
  first: a start slower than the whole budget still yields a model, and `within_budget` says so);
- a running trial stops at the end of the epoch after which the next one would cross it, and, as a
  last resort, mid-epoch at the deadline itself (its epochs so far count, as fmtune's do);
- the search deadline keeps back a reserve for loading the best model and one pass over the test
  set: 5 s plus a quarter of an epoch (a forward pass over 10,000 images costs far less than a
  training epoch over 54,000).

Usage: python -m tests.bench.vanilla_search --budget-minutes M --dataset fashion_mnist --out DIR
[--data-dir DIR]. Writes DIR/vanilla.json: each trial's end time and best val_accuracy, the best
model's test accuracy and the wall time.
"""

from __future__ import annotations

import time

STARTED = time.time()  # before the heavy imports: the budget covers them

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

EPOCHS = 5
PATIENCE = 2
BATCH_SIZE = 128
L2_RANGE = (1e-5, 1e-2)
VAL_FRACTION = 0.1
SEED = 42
RESERVE_SECONDS = 5.0
RESERVE_EPOCHS = 0.25
SETTINGS = {
    "tuner": "keras_tuner RandomSearch (Tuner + RandomSearchOracle)",
    "space": "conv(32-128 step 32, kernel 3|5)+pool x2, dense 32-128 step 32, Adam lr 1e-2|1e-3, "
    f"L2 log {L2_RANGE[0]:g}..{L2_RANGE[1]:g}",
    "epochs_per_trial": EPOCHS,
    "early_stopping": f"val_loss, patience {PATIENCE}",
    "batch_size": BATCH_SIZE,
    "split": f"{1 - VAL_FRACTION:.0%}/{VAL_FRACTION:.0%} train/validation, stratified, seed {SEED}",
}


class Clock:
    """The budget shared by the oracle and every trial's callback. KT deep-copies callbacks for
    each trial, so this object returns itself from deepcopy to stay shared."""

    def __init__(self, started: float, budget_seconds: float):
        self.end = started + budget_seconds
        self.epochs: list[float] = []  # durations of whole epochs so far
        self.current = ""  # the running trial's id
        self.trial_epochs: dict[str, int] = {}  # epochs each trial ran
        self.closed = False  # a trial was stopped by the deadline: no new trial

    def __deepcopy__(self, memo: dict[int, Any]) -> Clock:
        return self

    def epoch_estimate(self) -> float:
        return statistics.median(self.epochs) if self.epochs else 0.0

    def search_deadline(self) -> float:
        return self.end - RESERVE_SECONDS - RESERVE_EPOCHS * self.epoch_estimate()


def build_model(hp: Any) -> Any:
    import keras

    l2 = keras.regularizers.L2(hp.Float("l2", *L2_RANGE, sampling="log"))
    layers: list[Any] = [keras.Input((28, 28, 1))]
    for i in range(2):
        filters = hp.Int(f"filters_{i}", 32, 128, step=32)
        kernel = hp.Choice(f"kernel_{i}", [3, 5])
        layers += [
            keras.layers.Conv2D(filters, kernel, padding="same", activation="relu", kernel_regularizer=l2),
            keras.layers.MaxPooling2D(),
        ]
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(hp.Int("units", 32, 128, step=32), activation="relu", kernel_regularizer=l2),
        keras.layers.Dense(10, activation="softmax"),
    ]
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [1e-2, 1e-3])),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def search(args: argparse.Namespace) -> dict[str, Any]:
    import tensorflow as tf

    cores = os.cpu_count() or 1
    tf.config.threading.set_intra_op_parallelism_threads(cores)
    tf.config.threading.set_inter_op_parallelism_threads(cores)
    import keras
    import keras_tuner as kt

    from fmtune import data

    clock = Clock(STARTED, args.budget_minutes * 60)

    ended: dict[str, float] = {}  # trial id -> when it ended

    class DeadlineOracle(kt.oracles.RandomSearchOracle):
        """Random search that starts no trial the budget cannot fit, and notes when each trial ended."""

        def populate_space(self, trial_id: str) -> dict[str, Any]:
            late = clock.closed or time.time() + clock.epoch_estimate() > clock.search_deadline()
            if late and clock.trial_epochs:  # the first trial always runs: there must be a model to test
                return {"status": "STOPPED", "values": None}
            clock.current = trial_id  # one process: trials run one at a time, in the order created
            return super().populate_space(trial_id)

        def end_trial(self, trial: Any) -> None:
            ended[trial.trial_id] = time.time()
            super().end_trial(trial)

    class Deadline(keras.callbacks.Callback):
        """Stops training at the epoch boundary the next epoch would cross, or at the deadline."""

        def __init__(self, clock: Clock):
            super().__init__()
            self.clock = clock
            self.began = 0.0

        def on_train_begin(self, logs: Any = None) -> None:
            self.clock.trial_epochs[self.clock.current] = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.began = time.time()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if time.time() >= self.clock.search_deadline():
                self.model.stop_training = self.clock.closed = True

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.clock.trial_epochs[self.clock.current] += 1
            if self.clock.closed:  # cut short at the deadline: not a whole epoch
                return
            self.clock.epochs.append(time.time() - self.began)
            if time.time() + self.clock.epochs[-1] > self.clock.search_deadline():
                self.model.stop_training = self.clock.closed = True

    dataset = data.load(args.dataset, args.data_dir, val_fraction=VAL_FRACTION, seed=SEED, download=False)

    def arrays(split: data.Split) -> tuple[Any, Any]:
        return (split.images[..., None].astype("float32") / 255.0), split.labels.astype("int32")

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = map(arrays, (dataset.train, dataset.val, dataset.test))
    oracle = DeadlineOracle(objective=kt.Objective("val_accuracy", "max"), max_trials=10_000, seed=SEED)
    tuner = kt.Tuner(
        oracle=oracle, hypermodel=build_model, directory=args.out / "kt", project_name="vanilla", overwrite=True
    )
    tuner.search(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        callbacks=[keras.callbacks.EarlyStopping("val_loss", patience=PATIENCE), Deadline(clock)],
        verbose=0,
    )
    searched = time.time()
    best_trial = oracle.get_best_trials(1)[0]
    (model,) = tuner.get_best_models(1)
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    finished = time.time()
    trials = [
        {
            "trial_id": t.trial_id,
            "status": t.status,
            "ended_s": ended[t.trial_id] - STARTED,
            "epochs": clock.trial_epochs.get(t.trial_id, 0),
            "val_accuracy": t.score,
            "hyperparameters": t.hyperparameters.values,
        }
        for t in sorted(oracle.trials.values(), key=lambda t: ended.get(t.trial_id, float("inf")))
        if t.trial_id in ended
    ]
    return {
        **SETTINGS,
        "dataset": args.dataset,
        "dataset_source": dataset.source,
        "budget_minutes": args.budget_minutes,
        "threads": cores,
        "started_at": STARTED,
        "trials": trials,
        "stopped_by_deadline": clock.closed,
        "epoch_seconds_median": clock.epoch_estimate(),
        "best_trial_id": best_trial.trial_id,
        "best_hyperparameters": best_trial.hyperparameters.values,
        "best_val_accuracy": best_trial.score,
        "test_loss": float(test_loss),
        "test_accuracy": float(test_accuracy),
        "search_seconds": searched - STARTED,
        "evaluate_seconds": finished - searched,
        "wall_seconds": finished - STARTED,
        "within_budget": finished - STARTED <= args.budget_minutes * 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-minutes", type=float, required=True)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("FMTUNE_DATA_DIR"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    record = search(args)
    (args.out / "vanilla.json").write_text(json.dumps(record, indent=2))
    print(
        f"vanilla: {len(record['trials'])} trials, best val_accuracy {record['best_val_accuracy']:.4f}, "
        f"test accuracy {record['test_accuracy']:.4f} in {record['wall_seconds'] / 60:.1f} min",
        flush=True,
    )


if __name__ == "__main__":
    main()
