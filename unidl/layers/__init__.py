"""Layers, written once over ``unidl.ops``; each runs on every backend."""
from .base import Input, InputLayer, Layer, LayerShapeError
from .core import Activation, Dense, Dropout, Flatten, Reshape
from .merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract

BUILTINS = {cls.__name__: cls for cls in (
    InputLayer, Dense, Activation, Flatten, Reshape, Dropout,
    Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate,
)}

__all__ = ["Layer", "Input", "InputLayer", "LayerShapeError", *BUILTINS]
