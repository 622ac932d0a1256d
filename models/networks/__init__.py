"""GlacierSeg segmentation networks; build them by name with ``models.build_model``."""
from .attention_deeplab import AttentionDeepLabV3Plus
from .boundary_unet import BoundaryUNet
from .deeplab import deeplabv3plus
from .rau_net import RAUNet, ResidualConvBlock
from .unet import UNet, smp_unet

__all__ = ["AttentionDeepLabV3Plus", "BoundaryUNet", "RAUNet", "ResidualConvBlock", "UNet", "deeplabv3plus", "smp_unet"]
