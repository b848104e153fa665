"""Bayesian optimisation of an MLP that tunes its batch size too, as the seed project did by
subclassing the tuner: here the HyperModel's own fit() does it, which fmtune honours as Keras
Tuner does.

    fmtune tune --hypermodel examples/bayesian_mlp.py:BatchSizeMLP --set search.algorithm=bayesian \
        --set search.max_trials=20 --budget 15m
"""

import keras
import keras_tuner as kt


class BatchSizeMLP(kt.HyperModel):
    def __init__(self, input_shape=(28, 28), num_classes=10):
        super().__init__()
        self.input_shape, self.num_classes = input_shape, num_classes

    def build(self, hp):
        model = keras.Sequential(
            [keras.Input(shape=self.input_shape), keras.layers.Rescaling(1 / 255), keras.layers.Flatten()]
        )
        for i in range(hp.Int("layers", 1, 3)):
            model.add(keras.layers.Dense(hp.Int(f"units_{i}", 32, 512, step=32), activation="relu"))
            model.add(keras.layers.Dropout(hp.Float(f"dropout_{i}", 0.1, 0.5, step=0.1)))
        model.add(keras.layers.Dense(self.num_classes, activation="softmax"))
        model.compile(
            optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [32, 64, 128]), **kwargs)
