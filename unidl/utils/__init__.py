"""``unidl.utils``: the Keras 3 utilities typical scripts call, on NumPy.

=====================================  ==============================================================
``to_categorical``, ``normalize``       one-hot labels, per-row normalization (``numerical``)
``pad_sequences``                       lists of sequences to one array (``sequences``)
``set_random_seed``                     seeds Python, NumPy, unidl's defaults, torch/TF if imported
``timeseries_dataset_from_array``       sliding windows as a ``Dataset`` that ``fit`` takes
``split_dataset``, ``Dataset``          train/validation splits; a small ``tf.data``-like dataset
``PyDataset`` (``Sequence``)            base class for Python batch generators that ``fit`` takes
``image_dataset_from_directory``,       class-per-subdirectory files as batches (images need Pillow)
``text_dataset_from_directory``
``plot_model``, ``model_to_dot``        the layer graph through pydot + Graphviz (``dot_source``: no deps)
``Progbar``                             Keras's progress bar for custom loops
=====================================  ==============================================================

Importing this package imports no framework and no other unidl module, so
any unidl module may import from it (models read
``unidl.utils.random_seed.default_seed``).
"""
from __future__ import annotations

from .datasets import Dataset, PyDataset, Sequence, split_dataset, timeseries_dataset_from_array
from .directories import image_dataset_from_directory, text_dataset_from_directory
from .numerical import normalize, to_categorical
from .plotting import dot_source, model_to_dot, plot_model
from .progress import Progbar
from .random_seed import default_seed, get_random_seed, set_random_seed
from .sequences import pad_sequences

__all__ = [
    "Dataset", "Progbar", "PyDataset", "Sequence", "default_seed", "dot_source", "get_random_seed", "image_dataset_from_directory",
    "model_to_dot", "normalize", "pad_sequences", "plot_model", "set_random_seed", "split_dataset",
    "text_dataset_from_directory", "timeseries_dataset_from_array", "to_categorical",
]
