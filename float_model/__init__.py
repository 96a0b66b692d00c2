"""FLOAT (arXiv 2412.01064) in plain PyTorch: audio-driven talking portraits by flow matching in a
learned motion latent space. This package never imports ComfyUI; the node pack is a thin layer on it."""

from .checkpoint import CheckpointError, convert_checkpoint, load_float_model, save_model
from .config import EMOTIONS, FloatConfig, FMTConfig, MotionAutoEncoderConfig
from .model import FloatModel
from .motion_autoencoder import EncodedImage

__all__ = [
    "EMOTIONS",
    "CheckpointError",
    "EncodedImage",
    "FMTConfig",
    "FloatConfig",
    "FloatModel",
    "MotionAutoEncoderConfig",
    "convert_checkpoint",
    "load_float_model",
    "save_model",
]
