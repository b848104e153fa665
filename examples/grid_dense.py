"""A grid search over dense layers: every combination of hidden size, dropout and learning rate.

    fmtune tune --hypermodel examples/grid_dense.py:build_model --set search.algorithm=grid \
        --set search.max_trials=12 --set search.asha.enabled=false --budget 20m
"""

import keras


def build_model(hp, input_shape=(28, 28), num_classes=10):
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(hp.Choice("units", [64, 128, 256]), activation="relu"),
            keras.layers.Dropout(hp.Choice("dropout", [0.2, 0.4])),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [1e-3, 1e-2])),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
