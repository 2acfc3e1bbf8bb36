"""Feature extractors: ``nn.Module``s mapping items to flat feature vectors ``(batch, out_features)``."""
from fewzero.backbones.conv4 import Conv4, conv_block
from fewzero.backbones.conv4_strided import Conv4Strided
from fewzero.backbones.resnet_small import ResNetSmall
from fewzero.backbones.simple import MLP, Identity

__all__ = ["Conv4", "Conv4Strided", "MLP", "Identity", "ResNetSmall", "conv_block"]
