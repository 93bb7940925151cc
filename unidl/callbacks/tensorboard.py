"""TensorBoard: event files TensorBoard reads, through tensorboard's own writer (or TensorFlow's)."""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..utils.plotting import layer_graph
from .base import Callback
from .monitoring import _is_real_number


class _Protos:
    """The protocol-buffer classes of an event writer (TensorBoard's and TensorFlow's have the same fields)."""

    def __init__(self, summary, histogram, graph_def):
        self.Summary, self.HistogramProto, self.GraphDef = summary, histogram, graph_def


class _TensorBoardFileWriter:
    """Events through the ``tensorboard`` package's record writer and protos, into a local file.

    (tensorboard's ``EventFileWriter`` would import TensorFlow when it is installed, for its
    file-system layer; the record framing and the protos need nothing.)
    """

    name = "tensorboard"
    _files_opened = 0

    def __init__(self, logdir: str):
        import socket
        import time

        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.graph_pb2 import GraphDef
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self.protos = _Protos(Summary, HistogramProto, GraphDef)
        self._event = Event
        type(self)._files_opened += 1
        # The name TensorBoard's own writers use: the run's files sort by creation time.
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
                f"{type(self)._files_opened}")
        self.path = os.path.join(logdir, name)
        self._writer = RecordWriter(open(self.path, "wb"))
        self._add(Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def _add(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def write(self, summary, step: int) -> None:
        import time
        self._add(self._event(wall_time=time.time(), step=int(step), summary=summary))

    def write_graph(self, graph_def) -> None:
        import time
        self._add(self._event(wall_time=time.time(), graph_def=graph_def.SerializeToString()))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()


class _TensorFlowFileWriter:
    """Events through ``tf.summary`` (used when TensorFlow is installed but the tensorboard package is not)."""

    name = "tensorflow"

    def __init__(self, logdir: str):
        import tensorflow as tf

        self._tf = tf
        self.protos = _Protos(tf.compat.v1.Summary, tf.compat.v1.HistogramProto, tf.compat.v1.GraphDef)
        self._writer = tf.summary.create_file_writer(logdir)

    def write(self, summary, step: int) -> None:
        with self._writer.as_default():
            self._tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=int(step))

    def write_graph(self, graph_def) -> None:
        with self._writer.as_default():
            self._tf.summary.graph(graph_def)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


_WRITERS = {"tensorboard": _TensorBoardFileWriter, "tensorflow": _TensorFlowFileWriter}


def _event_writer_class(choice: str):
    """The writer class for ``choice`` ("auto": tensorboard's, else TensorFlow's), or an ImportError."""
    import importlib.util

    names = ["tensorboard", "tensorflow"] if choice == "auto" else [choice]
    for name in names:
        if importlib.util.find_spec(name) is not None:
            return _WRITERS[name]
    raise ImportError("the TensorBoard callback writes event files with the tensorboard package: "
                      "`pip install tensorboard` (or `pip install unidl[tensorboard]`); TensorFlow's writer "
                      "is used instead when TensorFlow is installed"
                      + ("" if choice == "auto" else f" (writer={choice!r} was asked for and is not installed)"))


def _histogram(protos: _Protos, values: np.ndarray, bins: int = 30):
    """A TensorBoard histogram of ``values``: ``bucket_limit`` holds each bucket's right edge."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return protos.HistogramProto()
    counts, edges = np.histogram(values, bins=bins)
    return protos.HistogramProto(min=float(values.min()), max=float(values.max()), num=float(values.size),
                                 sum=float(values.sum()), sum_squares=float(np.dot(values, values)),
                                 bucket_limit=[float(e) for e in edges[1:]], bucket=[float(c) for c in counts])


class TensorBoard(Callback):
    """Writes event files for TensorBoard (``tensorboard --logdir logs``), laid out as Keras does.

    ``log_dir/train`` gets ``epoch_<name>`` scalars (loss, metrics,
    ``epoch_learning_rate``) at step = epoch; ``log_dir/validation`` gets the
    ``val_`` values under the same tags, so TensorBoard draws training and
    validation on one chart. With ``update_freq="batch"`` (or every N
    batches) ``log_dir/train`` also gets ``batch_<name>`` at step = the global
    batch count (continuing from the optimizer's step count, so a resumed run
    does not overwrite earlier steps). ``on_test_end`` (``evaluate`` or
    validation passing callbacks) writes ``evaluation_<name>_vs_iterations``
    to ``log_dir/validation`` at step = the optimizer's iterations.

    Args:
        log_dir: the directory (created when missing).
        histogram_freq: every that many epochs, a histogram of each weight
            (``<layer>/<weight>/histogram``, step = epoch); 0 writes none.
        write_graph: write the layer graph (the Graphs tab: one node per layer,
            its class, output shape and parameter count as attributes).
        write_steps_per_second: also log the training speed (``epoch_steps_per_second``,
            ``batch_steps_per_second``).
        update_freq: "epoch" (default), "batch", or an integer N: batch
            scalars every N batches.
        writer: "auto" (default): the ``tensorboard`` package's event writer,
            or TensorFlow's ``tf.summary`` writer when only TensorFlow is installed;
            "tensorboard" or "tensorflow" to insist on one. torch's ``SummaryWriter``
            is itself built on the ``tensorboard`` package, which is used directly.

    The writer is imported when training starts, never at ``import unidl``;
    without either package training stops at once with an ImportError naming
    ``pip install tensorboard``. ``write_images``, ``profile_batch`` and the
    embedding options of Keras are accepted and ignored with a warning.
    """

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0, write_graph: bool = True,
                 write_images: bool = False, write_steps_per_second: bool = False, update_freq: str | int = "epoch",
                 profile_batch: int = 0, embeddings_freq: int = 0, embeddings_metadata=None,
                 writer: str = "auto"):
        super().__init__()
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, (int, np.integer)) \
                or histogram_freq < 0:
            raise ValueError(f"TensorBoard: histogram_freq must be a non-negative integer, got "
                             f"histogram_freq={histogram_freq!r}")
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, (int, np.integer))
                                       or update_freq <= 0):
            raise ValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a positive number of batches, "
                             f"got update_freq={update_freq!r}")
        if writer not in ("auto", *_WRITERS):
            raise ValueError(f"TensorBoard: writer must be 'auto', 'tensorboard' or 'tensorflow', got {writer!r}")
        ignored = [name for name, value, default in (("write_images", write_images, False),
                                                     ("profile_batch", profile_batch, 0),
                                                     ("embeddings_freq", embeddings_freq, 0),
                                                     ("embeddings_metadata", embeddings_metadata, None))
                   if value != default and not (name == "profile_batch" and value in (None, (0, 0)))]
        if ignored:
            warnings.warn(f"TensorBoard: {ignored} are not supported by unidl and are ignored", RuntimeWarning,
                          stacklevel=2)
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq, self.write_graph = int(histogram_freq), bool(write_graph)
        self.write_steps_per_second = bool(write_steps_per_second)
        self.update_freq = update_freq
        self.writer = writer
        self._writers: dict[str, Any] = {}
        self._writer_class = None
        self._global_train_batch: int | None = None
        self._batch_start = 0.0
        self._epoch_start = 0.0
        self._epoch_start_batch = 0

    # ------------------------------------------------------------ writers
    def _writer(self, run: str):
        """The event writer of ``log_dir/<run>`` ("train" or "validation"), opened on first use."""
        if run not in self._writers:
            if self._writer_class is None:
                self._writer_class = _event_writer_class(self.writer)
            directory = os.path.join(self.log_dir, run)
            os.makedirs(directory, exist_ok=True)
            self._writers[run] = self._writer_class(directory)
        return self._writers[run]

    def _scalars(self, run: str, values: dict[str, Any], step: int, prefix: str) -> None:
        writer = self._writer(run)
        items = []
        for name, value in values.items():
            if _is_real_number(value):
                items.append(writer.protos.Summary.Value(tag=f"{prefix}{name}", simple_value=float(value)))
        if items:
            writer.write(writer.protos.Summary(value=items), step)

    def _close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # ------------------------------------------------------------ hooks
    def on_train_begin(self, logs=None):
        self._writer_class = _event_writer_class(self.writer)  # a missing package fails before any training
        self._global_train_batch = None  # read from the optimizer at the first batch (after any restore)
        if self.write_graph:
            self._write_model_graph()

    def on_train_end(self, logs=None):
        self._close()

    def _batches_so_far(self) -> int:
        if self._global_train_batch is None:
            optimizer = getattr(self.model, "optimizer", None)
            self._global_train_batch = int(getattr(optimizer, "iterations", 0) or 0)
        return self._global_train_batch

    def on_epoch_begin(self, epoch, logs=None):
        import time
        self._epoch_start, self._epoch_start_batch = time.perf_counter(), self._batches_so_far()

    def on_train_batch_begin(self, batch, logs=None):
        import time
        self._global_train_batch = self._batches_so_far() + 1
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        import time
        if self.update_freq == "epoch" or self._global_train_batch % self.update_freq:
            return
        values = dict(logs or {})
        if self.write_steps_per_second:
            elapsed = time.perf_counter() - self._batch_start
            values["steps_per_second"] = 1.0 / elapsed if elapsed > 0 else 0.0
        self._scalars("train", values, self._global_train_batch, "batch_")

    def on_epoch_end(self, epoch, logs=None):
        import time
        logs = logs or {}
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        validation = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and hasattr(optimizer, "current_learning_rate"):
            train["learning_rate"] = optimizer.current_learning_rate
        if self.write_steps_per_second:
            elapsed = time.perf_counter() - self._epoch_start
            steps = self._batches_so_far() - self._epoch_start_batch
            train["steps_per_second"] = steps / elapsed if elapsed > 0 else 0.0
        self._scalars("train", train, epoch, "epoch_")
        if validation:
            self._scalars("validation", validation, epoch, "epoch_")
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write_histograms(epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not logs:
            return
        self._scalars("validation", {f"evaluation_{k}_vs_iterations": v for k, v in logs.items()},
                      int(optimizer.iterations), "")
        self._writer("validation").flush()

    # ------------------------------------------------------------ contents
    def _write_histograms(self, epoch: int) -> None:
        writer = self._writer("train")
        seen: set[int] = set()
        values = []
        for layer in self.model.layers:
            for weight in layer.weights:
                if id(weight) in seen:
                    continue
                seen.add(id(weight))
                name = weight.name if "/" in weight.name else f"{layer.name}/{weight.name}"
                values.append(writer.protos.Summary.Value(tag=f"{name}/histogram",
                                                          histo=_histogram(writer.protos, weight.numpy())))
        if values:
            writer.write(writer.protos.Summary(value=values), epoch)

    def _write_model_graph(self) -> None:
        """The layer graph as a GraphDef: one node per layer, named by its path, wired as the model is."""

        model = self.model
        if not getattr(model, "built", False):
            return  # built by the first batch of an iterable: nothing to draw yet
        writer = self._writer("train")
        graph = layer_graph(model, expand_nested=True)
        names = {}
        for node in graph.nodes:
            names[node.key] = "/".join([*map(str, node.cluster), str(node.layer.name or node.key)])
        inputs: dict[str, list[str]] = {}
        for src, dst in graph.edges:
            inputs.setdefault(dst, []).append(names[src])
        graph_def = writer.protos.GraphDef()
        for node in graph.nodes:
            layer = node.layer
            item = graph_def.node.add()
            item.name, item.op = names[node.key], type(layer).__name__
            item.input.extend(inputs.get(node.key, []))
            shape = getattr(layer, "output_shape", None)
            if shape is None and getattr(layer, "shape", None) is not None:
                shape = (None, *layer.shape)  # an Input declares one sample's shape
            item.attr["output_shape"].s = str(shape).encode()
            params = int(sum(int(np.prod(w.shape)) for w in getattr(layer, "weights", [])))
            item.attr["params"].i = params
        writer.write_graph(graph_def)
        writer.flush()
