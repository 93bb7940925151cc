"""Keras 3 scripts, written as Keras users write them, run after ``import unidl as keras``.

Each module has ``main(keras) -> dict``: it builds, trains and evaluates on small offline data and
returns what a test compares (losses per epoch, metrics). The scripts never name a backend: the
test chooses it with ``unidl.config.set_backend``, as ``KERAS_BACKEND`` does for Keras.
"""
