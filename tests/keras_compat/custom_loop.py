"""Keras's "Writing a training loop from scratch" guide: eager ops, a GradientTape, metric objects."""
import numpy as np


def main(keras):
    rng = np.random.default_rng(5)
    x_train = rng.random((128, 16)).astype("float32")
    y_train = (x_train.sum(axis=1) > 8).astype("int64")
    inputs = keras.Input(shape=(16,), name="digits")
    x1 = keras.layers.Dense(32, activation="relu")(inputs)
    x2 = keras.layers.Dense(32, activation="relu")(x1)
    outputs = keras.layers.Dense(2, name="predictions")(x2)
    model = keras.Model(inputs=inputs, outputs=outputs)
    optimizer = keras.optimizers.SGD(learning_rate=1e-2)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train_acc_metric = keras.metrics.SparseCategoricalAccuracy()
    batch_size = 32
    losses, accuracies = [], []
    for epoch in range(2):
        for step in range(len(x_train) // batch_size):
            x_batch = x_train[step * batch_size:(step + 1) * batch_size]
            y_batch = y_train[step * batch_size:(step + 1) * batch_size]
            with keras.GradientTape() as tape:
                logits = model(x_batch, training=True)
                loss_value = loss_fn(y_batch, logits)
            grads = tape.gradient(loss_value, model.trainable_weights)
            optimizer.apply_gradients(zip(grads, model.trainable_weights))
            train_acc_metric.update_state(y_batch, logits)
            losses.append(float(keras.ops.convert_to_numpy(loss_value)))
        accuracies.append(float(keras.ops.convert_to_numpy(train_acc_metric.result())))
        train_acc_metric.reset_state()
    return {"loss": losses, "accuracy": accuracies}
