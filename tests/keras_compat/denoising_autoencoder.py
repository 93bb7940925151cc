"""Keras's "Convolutional autoencoder for image denoising" example, on 8x8 digits padded to 12x12."""
import numpy as np


def main(keras):
    from sklearn.datasets import load_digits

    images = load_digits().images.astype("float32")[:128] / 16.0
    clean = np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None]
    noisy = np.clip(clean + 0.4 * np.random.default_rng(2).normal(size=clean.shape), 0.0, 1.0).astype("float32")
    inputs = keras.layers.Input(shape=(12, 12, 1))
    x = keras.layers.Conv2D(8, (3, 3), activation="relu", padding="same")(inputs)
    x = keras.layers.MaxPooling2D((2, 2), padding="same")(x)
    x = keras.layers.Conv2DTranspose(8, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = keras.layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)
    autoencoder = keras.Model(inputs, x)
    autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
    history = autoencoder.fit(x=noisy, y=clean, epochs=2, batch_size=32, shuffle=True,
                              validation_data=(noisy[:32], clean[:32]), verbose=0)
    predictions = autoencoder.predict(noisy[:8], verbose=0)
    return {"loss": history.history["loss"], "val_loss": history.history["val_loss"],
            "prediction_mean": [float(predictions.mean())]}
