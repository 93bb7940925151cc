"""Wrappers: layers that hold another layer. Bidirectional and TimeDistributed.

A wrapper builds its inner layer(s) with its own seeded generator and lists
their weights as its own, so models, optimizers and ``get_weights`` see them
in Keras's order (Bidirectional: the forward layer's, then the backward one's).
The config nests each inner layer as ``{"class_name": ..., "config": ...}``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from ..naming import snake_case
from ..serialization import deserialize_layer, serialize_layer
from .base import Layer, Shape


def _as_layer(spec) -> Layer:
    """A Layer, or one rebuilt from its ``{"class_name", "config"}`` (as in a saved config)."""
    if isinstance(spec, Layer):
        return spec
    if not (isinstance(spec, dict) and "class_name" in spec):
        raise TypeError(f"expected a unidl layer or a dict {{'class_name': ..., 'config': ...}}, got {spec!r}")
    return deserialize_layer(spec)


class _Wrapper(Layer):
    """Base of wrappers: the inner layers' weights count as the wrapper's own."""

    def _adopt(self, layer: Layer, name: str, input_shape: Shape):
        """Name an inner layer ``<wrapper>/<name>`` (weight names stay unique in a model), build it
        with this layer's generator, and return its output shape."""
        prefix = f"{self.name}/"
        layer.name = name if name.startswith(prefix) else prefix + name
        output_shape = layer.build_for(input_shape, self._rng)
        self._weights.extend(w for w in layer.weights if all(w is not mine for mine in self._weights))
        return output_shape

    def redraw_unseeded(self, rng: np.random.Generator) -> None:
        for layer in self._inner_layers():
            layer.redraw_unseeded(rng)
        self._rng = rng

    @property
    def draws_host_randomness(self) -> bool:
        # e.g. TimeDistributed(Dropout(...)): the model must run it eagerly
        return any(getattr(layer, "draws_host_randomness", False) for layer in self._inner_layers())

    def _inner_layers(self) -> list[Layer]:
        raise NotImplementedError


class Bidirectional(_Wrapper):
    """Runs a recurrent layer forwards and backwards in time and merges the two outputs.

    ``output = merge(forward(x), reverse_time(backward(x)))`` where ``backward`` is a
    fresh copy of the layer with ``go_backwards`` flipped; its sequence output is
    reversed back, so step t of both halves refers to input step t.

    Args:
        layer: a recurrent layer (SimpleRNN, LSTM, GRU), or its ``{"class_name", "config"}``.
            The wrapper uses a fresh copy of it (from its config), as Keras does.
        merge_mode: "concat" (default), "sum", "mul", "ave", or None (return both outputs as a list).
        backward_layer: optional recurrent layer for the backward direction (its config is used);
            default: a copy of ``layer`` with ``go_backwards`` flipped.

    Weights: the forward layer's, then the backward layer's.

    Input shape: (batch, time, features).
    Output shape: the inner layer's, with the last axis doubled for "concat".
    With ``return_state`` the layer returns ``[output, *forward_states, *backward_states]``.

    PyTorch's ``nn.LSTM(bidirectional=True)`` always concatenates, and its returned
    final backward state is the one after reading the whole sequence backwards (as here).
    """

    MERGE_MODES = ("concat", "sum", "mul", "ave", None)

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs: Any):
        super().__init__(**kwargs)
        layer = _as_layer(layer)
        if backward_layer is not None:
            backward_layer = _as_layer(backward_layer)
        for what, inner in (("layer", layer), ("backward_layer", backward_layer)):
            if inner is not None and not hasattr(inner, "go_backwards"):
                raise ValueError(f"Bidirectional: {what} must be a recurrent layer (SimpleRNN, LSTM, GRU...), "
                                 f"got {type(inner).__name__}")
        if merge_mode not in self.MERGE_MODES:
            raise ValueError(f"Bidirectional: merge_mode must be one of {list(self.MERGE_MODES)}, "
                             f"got merge_mode={merge_mode!r}")
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        self.forward_layer = type(layer)(**config)
        if backward_layer is None:
            self.backward_layer = type(layer)(**{**config, "go_backwards": not layer.go_backwards})
        else:
            self.backward_layer = type(backward_layer)(
                **{k: v for k, v in backward_layer.get_config().items() if k != "name"})
            for attr in ("return_sequences", "return_state"):
                if getattr(self.backward_layer, attr) != getattr(self.forward_layer, attr):
                    raise ValueError(f"Bidirectional: layer and backward_layer must agree on {attr}")
            if self.backward_layer.go_backwards == self.forward_layer.go_backwards:
                raise ValueError("Bidirectional: backward_layer must have go_backwards opposite to layer's")
        self.merge_mode = merge_mode
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state = self.forward_layer.return_state
        self._has_backward_layer = backward_layer is not None

    def _inner_layers(self) -> list[Layer]:
        return [self.forward_layer, self.backward_layer]

    def _zero_masked_outputs(self) -> None:
        for layer in self._inner_layers():
            layer.zero_output_for_mask = self.return_sequences

    def build(self, input_shape: Shape) -> None:
        self._zero_masked_outputs()
        self._adopt(self.forward_layer, f"forward_{snake_case(type(self.forward_layer).__name__)}", input_shape)
        self._adopt(self.backward_layer, f"backward_{snake_case(type(self.backward_layer).__name__)}", input_shape)

    def call(self, inputs, training: bool = False, mask=None, initial_state=None):
        forward_state = backward_state = None
        if initial_state is not None:  # Keras: the forward layer's states, then the backward layer's
            half = len(initial_state) // 2
            forward_state, backward_state = initial_state[:half], initial_state[half:]
        forward = self.forward_layer(inputs, training=training, mask=mask, initial_state=forward_state)
        backward = self.backward_layer(inputs, training=training, mask=mask, initial_state=backward_state)
        states = []
        if self.return_state:
            forward, *forward_states = forward
            backward, *backward_states = backward
            states = forward_states + backward_states
        if self.return_sequences:
            steps = ops.shape(backward)[1]
            backward = ops.take(backward, np.arange(steps - 1, -1, -1), axis=1)
        output = self._merge(forward, backward)
        if self.return_state:
            return [*(output if self.merge_mode is None else [output]), *states]
        return output

    supports_masking = True

    def compute_mask(self, inputs, mask=None):
        out = mask if self.return_sequences else None
        if self.return_state:
            states = [None] * (2 * self.forward_layer._n_states)
            return [out, out, *states] if self.merge_mode is None else [out, *states]
        return [out, out] if self.merge_mode is None else out

    def _merge(self, forward, backward):
        if self.merge_mode == "concat":
            return ops.concatenate([forward, backward], axis=-1)
        if self.merge_mode == "sum":
            return ops.add(forward, backward)
        if self.merge_mode == "mul":
            return ops.multiply(forward, backward)
        if self.merge_mode == "ave":
            return ops.multiply(ops.add(forward, backward), 0.5)
        return [forward, backward]

    def compute_output_shape(self, input_shape: Shape):
        forward = self.forward_layer.compute_output_shape(input_shape)
        backward = self.backward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            forward, *forward_states = forward
            backward, *backward_states = backward
            states = forward_states + backward_states
        if self.merge_mode == "concat":
            output = [(*forward[:-1], forward[-1] + backward[-1])]
        elif self.merge_mode is None:
            output = [forward, backward]
        else:
            output = [forward]
        return [*output, *states] if (self.return_state or self.merge_mode is None) else output[0]

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "layer": serialize_layer(self.forward_layer),
                  "merge_mode": self.merge_mode}
        # Names of inner layers are the wrapper's business: leave them out of the nested configs.
        config["layer"]["config"].pop("name", None)
        if self._has_backward_layer:
            config["backward_layer"] = serialize_layer(self.backward_layer)
            config["backward_layer"]["config"].pop("name", None)
        else:
            config["backward_layer"] = None
        return config


class TimeDistributed(_Wrapper):
    """Applies a layer to every time step: ``output[:, t] = layer(inputs[:, t])``.

    The batch and time axes are merged (``reshape(-1, ...)``), the layer runs once on
    (batch * time, ...), and the result is split back, so every step shares the weights.

    Args:
        layer: any layer (e.g. Dense), or its ``{"class_name", "config"}``.

    Weights: the inner layer's.

    Input shape: (batch, time, ...). Output shape: (batch, time, *inner output shape).

    PyTorch has no TimeDistributed: ``nn.Linear`` already maps the last axis of any
    rank, and other modules are applied to ``x.flatten(0, 1)`` by hand, as done here.
    """

    def __init__(self, layer, **kwargs: Any):
        super().__init__(**kwargs)
        self.layer = _as_layer(layer)
        if not isinstance(self.layer, Layer):
            raise ValueError(f"TimeDistributed: layer must be a unidl layer, got {layer!r}")

    def _inner_layers(self) -> list[Layer]:
        return [self.layer]

    def build(self, input_shape: Shape) -> None:
        if len(input_shape) < 3:
            raise ValueError(f"TimeDistributed {self.name!r} expects inputs of rank >= 3 (batch, time, ...), "
                             f"got input shape {input_shape}")
        self._adopt(self.layer, self.layer.name or snake_case(type(self.layer).__name__), (None, *input_shape[2:]))

    supports_masking = True  # each step is mapped alone: the time mask carries over

    def call(self, inputs, training: bool = False):
        shape = ops.shape(inputs)  # shape[0], the batch size, may be unknown: only -1 stands for it
        merged = ops.reshape(inputs, (-1, *shape[2:]))
        out = self.layer(merged, training=training)
        return ops.reshape(out, (-1, shape[1], *ops.shape(out)[1:]))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        inner = self.layer.compute_output_shape((None, *input_shape[2:]))
        return (input_shape[0], input_shape[1], *inner[1:])

    def get_config(self) -> dict[str, Any]:
        layer = serialize_layer(self.layer)
        name, prefix = layer["config"].get("name"), f"{self.name}/"
        if name and name.startswith(prefix):  # the wrapper adds its prefix again when it builds
            layer["config"]["name"] = name[len(prefix):]
        return {**super().get_config(), "layer": layer}
