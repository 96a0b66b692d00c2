"""The FLOAT graph types: what flows along each kind of link, so that ComfyUI refuses wrong connections.

Values are plain dataclasses over float_model objects. ComfyUI keeps node outputs in its cache and hands
the same object to later runs, so nodes never change a value they receive: they build a new one.
Tensors that stay in a value live on ComfyUI's intermediate device (the CPU by default), not in VRAM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..float_model import FloatModel
from ..float_model.crop_box import CropBox
from ..float_model.motion import num_output_frames

# Socket type names, as ComfyUI shows them on links.
FLOAT_MODEL = "FLOAT_MODEL"
FLOAT_AUDIO_ENCODER = "FLOAT_AUDIO_ENCODER"
FLOAT_EMOTION_MODEL = "FLOAT_EMOTION_MODEL"
FLOAT_CROP = "FLOAT_CROP"
FLOAT_APPEARANCE = "FLOAT_APPEARANCE"
FLOAT_AUDIO_FEATURES = "FLOAT_AUDIO_FEATURES"
FLOAT_EMOTION = "FLOAT_EMOTION"
FLOAT_MOTION = "FLOAT_MOTION"


@dataclass(frozen=True)
class Placement:
    """Where a network computes, in which dtype, and whether it stays there between runs."""

    device: torch.device
    dtype: torch.dtype
    offload_device: torch.device
    keep_loaded: bool

    @property
    def resting_device(self) -> torch.device:
        return self.device if self.keep_loaded else self.offload_device


@dataclass(frozen=True)
class LoadedFloat:
    """FLOAT_MODEL: the FLOAT file's own networks (motion auto-encoder, flow-matching transformer, audio projection)."""

    model: FloatModel
    placement: Placement
    source: Path


@dataclass(frozen=True)
class LoadedAudioEncoder:
    """FLOAT_AUDIO_ENCODER: the wav2vec2 network that turns speech into per-frame features."""

    wav2vec2: nn.Module
    placement: Placement
    source: Path


@dataclass
class LazyEmotionModel:
    """FLOAT_EMOTION_MODEL: the speech-emotion classifier (1.27 GB), found, downloaded and read on first use only, so a
    graph that chooses its emotion never loads it."""

    name: str  # as chosen in the loader: a folder or file in the model folders, downloaded if missing
    placement: Placement
    encoder: nn.Module | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Crops:
    """FLOAT_CROP: where each face crop came from, one box per image, for pasting the animation back."""

    boxes: tuple[CropBox, ...]


@dataclass(frozen=True)
class Appearance:
    """FLOAT_APPEARANCE: a batch of encoded portraits. The identity latent and feature pyramid drive the
    decoder; the motion coefficients give the reference motion the flow is conditioned on."""

    identity_latent: Tensor  # (B, 512)
    features: tuple[Tensor, ...]  # decoder feature pyramid, 7 maps per image
    motion_coefficients: Tensor  # (B, 20)

    @property
    def batch(self) -> int:
        return self.identity_latent.shape[0]


@dataclass(frozen=True)
class AudioFeatures:
    """FLOAT_AUDIO_FEATURES: speech prepared for the flow: wav2vec2 features at the model's 25 fps, the
    normalised 16 kHz waveform they came from (for emotion), and the output frame rate chosen."""

    features: Tensor  # (B, T, 512), T = ceil(seconds * 25)
    waveform: Tensor  # (B, N) normalised, 16 kHz
    fps: float  # frame rate of the video to make
    seconds: float

    @property
    def batch(self) -> int:
        return self.features.shape[0]

    @property
    def output_frames(self) -> int:
        """Frames of the finished video per clip."""
        return num_output_frames(self.seconds, self.fps)


@dataclass(frozen=True)
class Emotion:
    """FLOAT_EMOTION: probabilities over the model's emotion labels, (B, 7) for the clip or (B, T, 7) per frame."""

    probabilities: Tensor
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Motion:
    """FLOAT_MOTION: motion latents, one per output frame, (B, frames, 512), at `fps`, for `seconds` of audio."""

    latents: Tensor
    fps: float
    seconds: float

    @property
    def batch(self) -> int:
        return self.latents.shape[0]
