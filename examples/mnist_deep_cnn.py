"""A deep CNN for MNIST: 2, 4 or 6 convolutions in pooled pairs, with dropout; the best
configuration is retrained on train+val, as fmtune does with every search.

    fmtune tune --hypermodel examples/mnist_deep_cnn.py:build_model --set dataset=mnist \
        --set search.max_trials=10 --budget 30m
"""

import keras


def build_model(hp, input_shape=(28, 28), num_classes=10):
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    if len(input_shape) == 2:
        x = keras.layers.Reshape((*input_shape, 1))(x)
    filters = [32, 64, 64, 128, 128, 256]
    for pair in range(hp.Choice("conv_layers", [2, 4, 6]) // 2):
        for layer in (2 * pair, 2 * pair + 1):
            x = keras.layers.Conv2D(filters[layer], 3, padding="same", activation="relu")(x)
        if min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.25)(x)
    model = keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-2, sampling="log")),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
