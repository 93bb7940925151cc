"""Keras's "Timeseries classification from scratch" example (Conv1D + BatchNorm + ReLU blocks)."""
import numpy as np


def make_model(keras, input_shape, num_classes):
    input_layer = keras.layers.Input(input_shape)
    conv1 = keras.layers.Conv1D(filters=16, kernel_size=3, padding="same")(input_layer)
    conv1 = keras.layers.BatchNormalization()(conv1)
    conv1 = keras.layers.ReLU()(conv1)
    conv2 = keras.layers.Conv1D(filters=16, kernel_size=3, padding="same")(conv1)
    conv2 = keras.layers.BatchNormalization()(conv2)
    conv2 = keras.layers.ReLU()(conv2)
    gap = keras.layers.GlobalAveragePooling1D()(conv2)
    output_layer = keras.layers.Dense(num_classes, activation="softmax")(gap)
    return keras.models.Model(inputs=input_layer, outputs=output_layer)


def main(keras):
    rng = np.random.default_rng(1)
    t = np.linspace(0, 6 * np.pi, 40)
    y = rng.integers(0, 2, 160)
    x = np.sin(t[None, :] * (1 + y[:, None])) + 0.3 * rng.normal(size=(160, 40))
    x = x.reshape((x.shape[0], x.shape[1], 1)).astype("float32")
    model = make_model(keras, input_shape=x.shape[1:], num_classes=2)
    callbacks = [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=0.0001),
                 keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, verbose=0)]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=3, callbacks=callbacks, validation_split=0.2, verbose=0)
    test_loss, test_acc = model.evaluate(x, y, verbose=0)
    return {"loss": history.history["loss"], "test": [test_loss, test_acc]}
