"""Layers with Keras 3 names and arguments."""

from fastnn.layers.base import Layer, Variable
from fastnn.layers.convolutional import Conv2D
from fastnn.layers.core import Activation, Dense, Dropout, Flatten, Input, InputLayer
from fastnn.layers.embedding import Embedding
from fastnn.layers.merging import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    maximum,
    multiply,
    subtract,
)
from fastnn.layers.normalization import BatchNormalization
from fastnn.layers.pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from fastnn.layers.recurrent import GRU, LSTM, Masking, SimpleRNN
from fastnn.layers.wrappers import Bidirectional

Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D

__all__ = [
    "Activation",
    "Add",
    "Average",
    "AveragePooling2D",
    "AvgPool2D",
    "Bidirectional",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Convolution2D",
    "Dense",
    "Dropout",
    "Embedding",
    "GRU",
    "LSTM",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalAvgPool2D",
    "Input",
    "InputLayer",
    "Layer",
    "Masking",
    "MaxPool2D",
    "MaxPooling2D",
    "Maximum",
    "Multiply",
    "SimpleRNN",
    "Subtract",
    "Variable",
    "add",
    "average",
    "concatenate",
    "maximum",
    "multiply",
    "subtract",
]
