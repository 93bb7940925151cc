"""Character-level RNN: predict the next character of a small bundled text.

Two models on the same task (the text is examples/data/little_text.txt, written for
this project, about 1 KB; windows of 16 characters, one-hot encoded):

* ``rnn``: the classic tutorial RNN cell, written as a unidl custom layer. At each step
  ``combined = concat(input, hidden)``; ``hidden = i2h(combined)``;
  ``output = log_softmax(i2o(combined))`` -- the PyTorch tutorial's ``RNN(nn.Module)``
  with its two Linear layers, here two Dense sublayers of a ``unidl.layers.Layer``;
* ``lstm``: ``layers.LSTM(64)`` followed by ``Dense(vocab)``.

Both train with sparse categorical cross-entropy on the next character and then
generate text greedily from a seed string.

    python examples/char_rnn.py --backend torch --epochs 20
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import unidl
from unidl import layers, ops

TEXT = Path(__file__).resolve().parent / "data" / "little_text.txt"
WINDOW = 16


class TutorialRNN(layers.Layer):
    """The tutorial's RNN cell, run over a whole window; returns the last step's log-probabilities."""

    def __init__(self, hidden_size: int, output_size: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size, self.output_size = hidden_size, output_size
        self.i2h = layers.Dense(hidden_size)
        self.i2o = layers.Dense(output_size)

    def call(self, inputs):
        steps = ops.shape(inputs)[1]
        # hidden starts at zero: (batch, 1) x (1, hidden) zeros, so the batch size needs not be known
        hidden = ops.multiply(ops.sum(ops.take(inputs, 0, axis=1), axis=-1, keepdims=True),
                              ops.zeros((1, self.hidden_size)))
        for t in range(steps):
            combined = ops.concatenate([ops.take(inputs, t, axis=1), hidden], axis=1)
            hidden = self.i2h(combined)
            output = ops.log_softmax(self.i2o(combined), axis=1)
        return output

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size)

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size, "output_size": self.output_size}


def make_data(window: int = WINDOW):
    text = TEXT.read_text().replace("\n", " ")
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text])
    starts = np.arange(len(ids) - window)
    x = np.eye(len(vocab), dtype="float32")[ids[starts[:, None] + np.arange(window)]]
    y = ids[starts + window]
    return x, y, vocab


def build_model(kind: str, vocab_size: int, seed: int = 0) -> unidl.Model:
    if kind == "rnn":
        body = [TutorialRNN(128, vocab_size)]
    elif kind == "lstm":
        body = [layers.LSTM(64), layers.Dense(vocab_size)]
    else:
        raise ValueError(f"kind must be 'rnn' or 'lstm', got {kind!r}")
    return unidl.Sequential([layers.Input((WINDOW, vocab_size)), *body], seed=seed)


def generate(model: unidl.Model, vocab: list[str], seed_text: str, length: int = 60) -> str:
    text = seed_text
    eye = np.eye(len(vocab), dtype="float32")
    for _ in range(length):
        window = [vocab.index(c) for c in text[-WINDOW:]]
        text += vocab[int(model.predict(eye[window][None]).argmax())]
    return text


def main(backend: str = "numpy", epochs: int = 20, verbose: int = 0, seed: int = 0,
         kinds=("rnn", "lstm"), max_samples: int | None = None) -> dict:
    x, y, vocab = make_data()
    x, y = x[:max_samples], y[:max_samples]
    results = {}
    for kind in kinds:
        model = build_model(kind, len(vocab), seed)
        # log_softmax outputs are valid logits too (log_softmax of log-probabilities changes nothing)
        model.compile(optimizer=unidl.optimizers.Adam(learning_rate=3e-3),
                      loss=unidl.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], backend=backend)
        history = model.fit(x, y, epochs=epochs, batch_size=64, verbose=verbose)
        sample = generate(model, vocab, "the river runs p")
        results[kind] = {"loss": history.history["loss"][-1], "accuracy": history.history["accuracy"][-1],
                         "sample": sample}
        print(f"[{backend}] {kind}: loss {results[kind]['loss']:.3f}, next-character accuracy "
              f"{results[kind]['accuracy']:.3f}; sample: {sample!r}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, torch, tensorflow or a plugin backend")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    main(args.backend, args.epochs)
