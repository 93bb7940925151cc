"""Keras's "Bidirectional LSTM on IMDB" example, on synthetic padded id sequences (masking)."""
import numpy as np


def main(keras):
    rng = np.random.default_rng(3)
    lengths = rng.integers(3, 20, 96)
    sequences = [list(rng.integers(1, 200, n)) for n in lengths]
    y = np.array([int(np.mean(s) > 100) for s in sequences])
    x = keras.utils.pad_sequences(sequences, maxlen=20)
    inputs = keras.Input(shape=(None,), dtype="int32")
    x_ = keras.layers.Embedding(200, 16, mask_zero=True)(inputs)
    x_ = keras.layers.Bidirectional(keras.layers.LSTM(8, return_sequences=True))(x_)
    x_ = keras.layers.Bidirectional(keras.layers.LSTM(8))(x_)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x_)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=2, validation_data=(x[:32], y[:32]), verbose=0)
    return {"loss": history.history["loss"], "val_loss": history.history["val_loss"]}
