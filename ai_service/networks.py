"""Keras architectures: a 2.5D U-Net for disc/vertebra segmentation and a small CNN for P(herniation).

Builders only; weights live in the model registry. Hyper-parameters are arguments so Keras Tuner can search them.
"""

from __future__ import annotations

import keras
from keras import layers

import numpy as np

from ai_service.preprocess import CROP_SIZE, REFINE_FEATURES, REFINER_DEPTH, SEG_CLASSES


def _conv_block(x, filters: int, name: str):
    for i in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def build_unet(base_filters: int = 8, depth: int = 4) -> keras.Model:
    """U-Net on (H, W, 3) = slice and its neighbours (any size divisible by 2**depth; serving uses SEG_SIZE²,
    training random crops of it); output softmax over SEG_CLASSES."""
    inputs = keras.Input((None, None, 3), name="slices")
    x = inputs
    skips = []
    for level in range(depth):
        x = _conv_block(x, base_filters * 2**level, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, base_filters * 2**depth, "bottleneck")
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(base_filters * 2**level, 2, strides=2, name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _conv_block(x, base_filters * 2**level, f"dec{level}")
    outputs = layers.Conv2D(len(SEG_CLASSES), 1, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="disc_unet")


def build_refiner(channels: int = 8, depth: int = REFINER_DEPTH) -> keras.Model:
    """Disc decision on the input grid (preprocess.refine_features in, disc logit out): the U-Net works on a ~1 mm
    canvas, and most of its disc errors are the one input pixel along each boundary; a few 3x3 convolutions on the
    full-resolution image move that boundary. The logit is the U-Net's arg-max margin plus a learnt residual,
    which starts at zero, so an untrained refiner decides exactly as the U-Net does. (Dilated convolutions scored
    the same and export to ONNX as slow space-to-depth rearrangements.)"""
    inputs = keras.Input((None, None, REFINE_FEATURES), name="features")
    x = inputs
    for i in range(depth):
        x = layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"conv{i}")(x)
    residual = layers.Conv2D(1, 1, kernel_initializer="zeros", name="residual")(x)
    margin = layers.Conv2D(1, 1, use_bias=False, trainable=False, name="margin")(inputs)
    model = keras.Model(inputs, layers.Add(name="disc_logit")([margin, residual]), name="disc_refiner")
    pick = np.zeros((1, 1, REFINE_FEATURES, 1), np.float32)
    pick[..., -1, 0] = 1.0  # passes the margin channel through unchanged
    model.get_layer("margin").set_weights([pick])
    return model


def build_classifier(filters: int = 16, blocks: int = 3, dense: int = 64, dropout: float = 0.3) -> keras.Model:
    """CNN on a disc-centred crop (image + disc mask); output P(herniation on this slice)."""
    inputs = keras.Input((CROP_SIZE, CROP_SIZE, 2), name="crop")
    x = inputs
    for b in range(blocks):
        f = filters * 2**b
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"b{b}_conv0")(x)
        x = layers.BatchNormalization(name=f"b{b}_bn0")(x)
        x = layers.Activation("relu", name=f"b{b}_relu0")(x)
        x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"b{b}_conv1")(x)
        x = layers.BatchNormalization(name=f"b{b}_bn1")(x)
        x = layers.Activation("relu", name=f"b{b}_relu1")(x)
        x = layers.MaxPooling2D(2, name=f"b{b}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(dense, activation="relu", name="fc")(x)
    x = layers.Dropout(dropout, name="drop")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="p_herniation")(x)
    return keras.Model(inputs, outputs, name="herniation_cnn")
