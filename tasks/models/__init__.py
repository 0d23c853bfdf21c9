"""PyTorch models: the paper's convolutional autoencoder, the attacked CNN classifier."""

from tasks.models.classifier import SmallCNN
from tasks.models.conv_autoencoder import AE_LAYER_NAMES, ConvAutoencoder

__all__ = ["AE_LAYER_NAMES", "ConvAutoencoder", "SmallCNN"]
