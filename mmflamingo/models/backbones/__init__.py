"""Frozen vision encoders of Flamingo."""
from .base_vision_encoder import BaseVisionEncoder
from .hf_clip_vision import HFCLIPVisionEncoder
from .mmpretrain_vit import MMPretrainViTEncoder

__all__ = ['BaseVisionEncoder', 'HFCLIPVisionEncoder', 'MMPretrainViTEncoder']
