"""Two convolutions with L2 under random search: filters, kernel, dense units and learning rate.

    fmtune tune --hypermodel examples/two_conv_cnn.py:build_model --set search.algorithm=random \
        --set search.max_trials=10 --budget 30m
"""

import keras


def build_model(hp, input_shape=(28, 28), num_classes=10):
    l2 = keras.regularizers.L2(1e-4)
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    if len(input_shape) == 2:  # grayscale: the convolutions want a channel axis
        x = keras.layers.Reshape((*input_shape, 1))(x)
    for i in range(2):
        filters = hp.Int(f"filters_{i}", 32, 128, step=32)
        kernel = hp.Choice(f"kernel_{i}", [3, 5])
        # "same" padding keeps the image's size, so two 5x5 kernels still fit on 8x8 digits.
        x = keras.layers.Conv2D(filters, kernel, padding="same", activation="relu", kernel_regularizer=l2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(hp.Int("units", 32, 128, step=32), activation="relu", kernel_regularizer=l2)(x)
    model = keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Choice("learning_rate", [1e-2, 1e-3])),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
