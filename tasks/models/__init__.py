"""PyTorch models: the paper's conv autoencoder, the attacked CNN, A^3's dense models."""

from tasks.models.classifier import SmallCNN
from tasks.models.conv_autoencoder import AE_LAYER_NAMES, ConvAutoencoder
from tasks.models.dense import DENSE_PRESETS, VAE, DenseAutoencoder, dense_autoencoder
from tasks.models.layers import ActivationRecorder, capture, named_layers, resolve_layers

__all__ = [
    "AE_LAYER_NAMES", "DENSE_PRESETS", "VAE", "ActivationRecorder", "ConvAutoencoder",
    "DenseAutoencoder", "SmallCNN", "capture", "dense_autoencoder", "named_layers",
    "resolve_layers",
]
