"""Layers, written once over ``unidl.ops``; each runs on every backend.

One module per family, as in Keras: core (Dense, Dropout, Masking...), activation,
convolutional, pooling, reshaping, merging, normalization, embedding, recurrent,
attention, wrappers, preprocessing.
``BUILTINS`` maps class names to classes (used to load saved models).
"""
from ..serialization import register_layer_classes
from .attention import Attention, MultiHeadAttention
from .base import Input, InputLayer, Layer, LayerShapeError
from .activation import ELU, LeakyReLU, PReLU, ReLU, Softmax
from .convolutional import (Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, DepthwiseConv2D,
                            SeparableConv2D)
from .core import Activation, Dense, Dropout, Flatten, Masking, Reshape
from .embedding import Embedding
from .merging import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from .preprocessing import (CategoryEncoding, IntegerLookup, Normalization, Rescaling, StringLookup,
                            TextVectorization)
from .pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
                      GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D, MaxPooling2D)
from .normalization import BatchNormalization, LayerNormalization
from .recurrent import GRU, LSTM, SimpleRNN
from .reshaping import Permute, UpSampling2D, ZeroPadding2D
from .wrappers import Bidirectional, TimeDistributed

# Keras's short aliases
MaxPool2D, AvgPool2D, MaxPool1D, AvgPool1D = MaxPooling2D, AveragePooling2D, MaxPooling1D, AveragePooling1D

BUILTINS = {cls.__name__: cls for cls in (
    InputLayer, Dense, Activation, Flatten, Reshape, Dropout, Masking,
    Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate,
    Conv1D, Conv2D, Conv2DTranspose,
    MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D,
    GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
    ZeroPadding2D, UpSampling2D, Permute,
    BatchNormalization, LayerNormalization, Embedding, SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed,
    Attention, MultiHeadAttention,
    ReLU, LeakyReLU, PReLU, ELU, Softmax, Conv1DTranspose, DepthwiseConv2D, SeparableConv2D,
    Rescaling, Normalization, CategoryEncoding, IntegerLookup, StringLookup, TextVectorization,
)}

register_layer_classes(BUILTINS)  # saved configs name these classes

__all__ = ["Layer", "Input", "InputLayer", "LayerShapeError", *BUILTINS,
           "MaxPool2D", "AvgPool2D", "MaxPool1D", "AvgPool1D"]
