"""The "saved_model" export format: ``tf.saved_model.save`` of the model's native ``tf.Module``."""
from __future__ import annotations

import tensorflow as tf

from unidl.files import replace_directory


def write_saved_model(model, path, **options) -> None:
    """A SavedModel directory at ``path``, written beside it and renamed into place (atomic)."""
    module = model.to_native()
    replace_directory(path, lambda tmp: tf.saved_model.save(module, tmp, **options))
