"""Keras's "Imbalanced classification: credit card fraud detection" example, on synthetic data."""
import numpy as np


def main(keras):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, 12)).astype("float32")
    targets = (features[:, 0] + 0.5 * features[:, 1] > 1.8).astype("float32")  # about 5% positives
    counts = np.bincount(targets.astype(int))
    mean, std = features.mean(axis=0), features.std(axis=0)
    features = (features - mean) / std
    model = keras.Sequential([
        keras.Input(shape=(features.shape[-1],)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    metrics = [keras.metrics.FalseNegatives(name="fn"), keras.metrics.FalsePositives(name="fp"),
               keras.metrics.TrueNegatives(name="tn"), keras.metrics.TruePositives(name="tp"),
               keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall")]
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy", metrics=metrics)
    class_weight = {0: 1.0 / counts[0], 1: 1.0 / counts[1]}
    history = model.fit(features, targets, batch_size=128, epochs=4, verbose=0, class_weight=class_weight,
                        validation_data=(features[:100], targets[:100]))
    return {"loss": history.history["loss"], "recall": history.history["recall"],
            "val_precision": history.history["val_precision"]}
