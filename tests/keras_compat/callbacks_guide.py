"""Keras's "Writing your own callbacks" guide: every hook, logs, and stopping from a callback."""
import numpy as np


def main(keras):
    calls = []

    class CustomCallback(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            calls.append(("train_begin", sorted(logs or {})))

        def on_epoch_end(self, epoch, logs=None):
            calls.append(("epoch_end", epoch, sorted(logs)))

        def on_test_begin(self, logs=None):
            calls.append(("test_begin",))

        def on_test_end(self, logs=None):
            calls.append(("test_end", sorted(logs)))

        def on_predict_begin(self, logs=None):
            calls.append(("predict_begin",))

        def on_predict_end(self, logs=None):
            calls.append(("predict_end",))

        def on_train_batch_end(self, batch, logs=None):
            calls.append(("train_batch_end", batch, round(float(logs["loss"]), 6)))

        def on_test_batch_end(self, batch, logs=None):
            calls.append(("test_batch_end", batch))

    class EarlyStoppingAtMinLoss(keras.callbacks.Callback):
        def __init__(self, patience=0):
            super().__init__()
            self.patience = patience

        def on_train_begin(self, logs=None):
            self.wait, self.best = 0, np.inf

        def on_epoch_end(self, epoch, logs=None):
            current = logs.get("loss")
            if np.less(current, self.best):
                self.best, self.wait = current, 0
            else:
                self.wait += 1
                if self.wait >= self.patience:
                    self.model.stop_training = True

    rng = np.random.default_rng(6)
    x = rng.random((64, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.1), loss="mean_squared_error",
                  metrics=["mean_absolute_error"])
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, validation_split=0.25,
                        callbacks=[CustomCallback(), EarlyStoppingAtMinLoss()])
    model.evaluate(x, y, batch_size=32, verbose=0, callbacks=[CustomCallback()])
    model.predict(x, batch_size=32, callbacks=[CustomCallback()])
    return {"loss": history.history["loss"], "calls": calls}
