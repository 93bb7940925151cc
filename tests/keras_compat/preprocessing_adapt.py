"""Preprocessing layers adapted to data inside models: Normalization and TextVectorization."""
import numpy as np


def main(keras):
    rng = np.random.default_rng(7)
    features = (rng.normal(size=(64, 3)) * [1.0, 10.0, 100.0]).astype("float32")
    target = features @ np.array([[0.5], [0.05], [0.005]], dtype="float32")
    normalizer = keras.layers.Normalization(axis=-1)
    normalizer.adapt(features)
    regression = keras.Sequential([keras.Input(shape=(3,)), normalizer, keras.layers.Dense(1)])
    regression.compile(optimizer=keras.optimizers.Adam(learning_rate=0.1), loss="mean_absolute_error")
    regression_history = regression.fit(features, target, epochs=3, verbose=0)
    texts = np.array(["the movie was great", "a great film", "terrible acting and a bad plot",
                      "bad, bad movie", "what a great story", "the worst film"] * 4)
    labels = np.array([1, 1, 0, 0, 1, 0] * 4)
    vectorize = keras.layers.TextVectorization(max_tokens=50, output_mode="int", output_sequence_length=6)
    vectorize.adapt(texts)
    inputs = keras.Input(shape=(1,), dtype="string")
    x = vectorize(inputs)
    x = keras.layers.Embedding(50, 4)(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    classifier = keras.Model(inputs, outputs)
    classifier.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    text_history = classifier.fit(texts[:, None], labels, epochs=2, batch_size=8, verbose=0)
    return {"loss": regression_history.history["loss"], "text_loss": text_history.history["loss"]}
