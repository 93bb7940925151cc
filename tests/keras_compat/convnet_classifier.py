"""Keras's "Simple MNIST convnet" example, on 8x8 digits (scikit-learn's, offline)."""
import numpy as np


def main(keras):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.expand_dims(digits.images.astype("float32") / 16.0, -1)[:256]
    y = keras.utils.to_categorical(digits.target[:256], 10)
    model = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        keras.layers.Conv2D(8, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.summary()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=3, validation_split=0.25, verbose=0)
    score = model.evaluate(x, y, verbose=0)
    return {"loss": history.history["loss"], "val_loss": history.history["val_loss"], "test": score}
