"""Sizes and defaults of the FLOAT networks.

The released checkpoint carries no configuration. Sizes are read from tensor shapes (see
`checkpoint.infer_config`); what shapes cannot tell (attention heads, the 50 + 10 frame window, the
attention band) takes the official values below. Checkpoints written by this package store the whole
configuration as JSON in their safetensors metadata, so small or retrained models round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

# Emotion classes of the speech-emotion model, in its output order (FLOAT_SPEC §5).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

AUDIO_MODEL_NAME = "wav2vec2-base-960h"
EMOTION_MODEL_NAME = "wav2vec-english-speech-emotion-recognition"


def bundled_hf_config(model_name: str) -> dict[str, Any]:
    """The official `config.json` of one of the two HuggingFace models, shipped with the package."""
    text = resources.files(__package__).joinpath("hf_configs", model_name, "config.json").read_text()
    return json.loads(text)


@dataclass(frozen=True)
class MotionAutoEncoderConfig:
    """The LIA-style motion auto-encoder: encoder, motion basis and flow-warping decoder."""

    image_size: int = 512
    latent_dim: int = 512  # identity latent and motion latent width (style_dim, dim_w)
    motion_dim: int = 20  # directions of the learned motion basis (dim_m)
    # Feature channels at resolution r are min(channel_max, channel_base // r): 32 at 512 px, 512 from 32 px down.
    channel_base: int = 16384
    channel_max: int = 512

    def __post_init__(self) -> None:
        levels = math.log2(self.image_size)
        if self.image_size < 8 or levels != int(levels):
            raise ValueError(f"image_size must be a power of two >= 8, got {self.image_size}")

    def channels(self, resolution: int) -> int:
        return min(self.channel_max, self.channel_base // resolution)

    @property
    def num_levels(self) -> int:
        """Resolutions the encoder halves through down to 4 px, and the decoder doubles through from 8 px: 7 at 512."""
        return int(math.log2(self.image_size)) - 2


@dataclass(frozen=True)
class FMTConfig:
    """The flow-matching transformer that predicts the motion vector field."""

    motion_dim: int = 512  # motion latent width (dim_w)
    audio_dim: int = 512  # projected audio feature width (dim_a)
    emotion_dim: int = 7  # emotion classes (dim_e)
    hidden_size: int = 1024
    depth: int = 8
    num_heads: int = 8
    mlp_ratio: float = 4.0
    num_frames: int = 50  # L: frames generated per chunk (2 s at 25 fps)
    num_prev_frames: int = 10  # L': context frames carried over from the previous chunk
    attention_window: int = 2  # frame i attends to frames i-2 .. i+2
    frequency_dim: int = 256  # sinusoidal flow-time embedding width

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")

    @property
    def sequence_length(self) -> int:
        return self.num_prev_frames + self.num_frames


@dataclass(frozen=True)
class FloatConfig:
    """Everything needed to build a `FloatModel`.

    `wav2vec2` and `emotion` are HuggingFace `Wav2Vec2Config` dictionaries (the `config.json` of the
    audio encoder and of the speech-emotion model); `emotion` is None for a model loaded without the
    emotion classifier.
    """

    motion_autoencoder: MotionAutoEncoderConfig = field(default_factory=MotionAutoEncoderConfig)
    fmt: FMTConfig = field(default_factory=FMTConfig)
    wav2vec2: dict[str, Any] = field(default_factory=lambda: bundled_hf_config(AUDIO_MODEL_NAME))
    emotion: dict[str, Any] | None = field(default_factory=lambda: bundled_hf_config(EMOTION_MODEL_NAME))
    fps: float = 25.0  # fixed by the positional embedding: 50 frames are 2 s of audio
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.fmt.motion_dim != self.motion_autoencoder.latent_dim:
            raise ValueError(
                f"the FMT motion width {self.fmt.motion_dim} differs from the motion auto-encoder's latent width "
                f"{self.motion_autoencoder.latent_dim}: these networks were not trained together"
            )
        if self.emotion is not None and len(self.emotion_labels) != self.fmt.emotion_dim:
            raise ValueError(
                f"the emotion model has {len(self.emotion_labels)} classes but the FMT expects {self.fmt.emotion_dim}"
            )

    @property
    def audio_feature_dim(self) -> int:
        """Width of the stacked wav2vec2 hidden states: every transformer layer's output, side by side."""
        return self.wav2vec2["num_hidden_layers"] * self.wav2vec2["hidden_size"]

    @property
    def emotion_labels(self) -> tuple[str, ...]:
        if self.emotion is None or "id2label" not in self.emotion:
            return EMOTIONS
        id2label = self.emotion["id2label"]
        return tuple(str(id2label[key]).lower() for key in sorted(id2label, key=int))

    @property
    def samples_per_frame(self) -> int:
        return int(self.sample_rate / self.fps)

    def with_emotion(self, emotion: dict[str, Any] | None) -> FloatConfig:
        return dataclasses.replace(self, emotion=emotion)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FloatConfig:
        data = json.loads(text)
        return cls(
            motion_autoencoder=MotionAutoEncoderConfig(**data.pop("motion_autoencoder")),
            fmt=FMTConfig(**data.pop("fmt")),
            **data,
        )
