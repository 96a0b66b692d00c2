"""Speech in, conditions out: wav2vec2 audio features at the video frame rate, and emotion probabilities.

Both networks are transformers' public `Wav2Vec2Model`, built from a config and loaded by this
package's own checkpoint code (never `trust_remote_code`), with SDPA attention: FLOAT needs no
attention maps, and eager attention costs O(T^2) memory on long clips.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Wav2Vec2Config, Wav2Vec2Model


def wav2vec2_config(config: dict[str, Any]) -> Wav2Vec2Config:
    """A Wav2Vec2Config from a config.json dictionary, with SDPA attention."""
    config = {key: value for key, value in config.items() if key not in ("attn_implementation", "_attn_implementation")}
    return Wav2Vec2Config(**config, attn_implementation="sdpa")


def normalize_waveform(waveform: Tensor) -> Tensor:
    """Zero mean, unit variance per clip: wav2vec2's feature-extractor normalisation, (x - mean) / sqrt(var + 1e-7).

    waveform (B, N) mono at 16 kHz. The variance is the population variance, as in the official path.
    """
    waveform = waveform.float()
    mean = waveform.mean(dim=-1, keepdim=True)
    var = waveform.var(dim=-1, keepdim=True, unbiased=False)
    return (waveform - mean) / torch.sqrt(var + 1e-7)


def audio_projection(stacked_dim: int, audio_dim: int) -> nn.Sequential:
    """Stacked wav2vec2 states -> the FMT's audio features: Linear, LayerNorm, SiLU (trained in phase 2)."""
    return nn.Sequential(nn.Linear(stacked_dim, audio_dim), nn.LayerNorm(audio_dim), nn.SiLU())


def project_audio(projection: nn.Sequential, stacked: Tensor) -> Tensor:
    """Stacked wav2vec2 hidden states (B, T, layers * hidden) -> audio features (B, T, audio_dim). Phase 2
    trains only this part, on cached stacked states. The states are moved to the projection's device and
    dtype: wav2vec2 may live elsewhere (ComfyUI's separate loaders) or be cached in float16."""
    weight = projection[0].weight
    return projection(stacked.to(weight.device, weight.dtype))


class AudioEncoder(nn.Module):
    """Normalised 16 kHz waveform -> one 512-d audio feature per video frame.

    The wav2vec2 CNN runs at about 50 Hz; its output is resampled linearly to exactly T frames before
    the transformer, which therefore runs at the video rate. The outputs of all transformer layers are
    concatenated per frame (layer-major: feature index = layer * hidden + channel) and projected.
    """

    def __init__(self, config: dict[str, Any], audio_dim: int = 512):
        super().__init__()
        self.wav2vec2 = Wav2Vec2Model(wav2vec2_config(config))
        stacked = self.wav2vec2.config.num_hidden_layers * self.wav2vec2.config.hidden_size
        self.audio_projection = audio_projection(stacked, audio_dim)

    def forward(self, waveform: Tensor, num_frames: int, samples_per_frame: int = 640) -> Tensor:
        """waveform (B, N) normalised -> audio features (B, num_frames, audio_dim)."""
        return project_audio(self.audio_projection, self.stacked_features(waveform, num_frames, samples_per_frame))

    def stacked_features(self, waveform: Tensor, num_frames: int, samples_per_frame: int = 640) -> Tensor:
        """waveform (B, N) normalised -> every transformer layer's output side by side, (B, num_frames, layers * hidden)."""
        if self.wav2vec2 is None:
            raise RuntimeError("this FLOAT model was loaded without its wav2vec2 audio encoder: attach one with with_speech_networks")
        # Replicate-pad to whole frames, as the official encoder does; shorter clips stay as they are.
        missing = num_frames * samples_per_frame - waveform.shape[-1]
        if missing > 0:
            waveform = torch.cat([waveform, waveform[:, -1:].expand(-1, missing)], dim=-1)

        def to_frame_rate(module: nn.Module, inputs: Any, cnn_features: Tensor) -> Tensor:
            return F.interpolate(cnn_features, size=num_frames, mode="linear", align_corners=True)

        # A forward hook on the CNN keeps transformers' own forward (the same on 4.x and 5.x) in charge
        # of everything after it.
        hook = self.wav2vec2.feature_extractor.register_forward_hook(to_frame_rate)
        try:
            hidden_states = self.wav2vec2(waveform, output_hidden_states=True).hidden_states
        finally:
            hook.remove()
        # Entry 0 is the embedding before the first layer; FLOAT uses the layers' outputs.
        return torch.stack(hidden_states[1:], dim=2).flatten(2)  # (B, T, layers * hidden)


class EmotionClassifierHead(nn.Module):
    def __init__(self, hidden_size: int, num_labels: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.out_proj(torch.tanh(self.dense(pooled)))


class SpeechEmotionClassifier(nn.Module):
    """wav2vec2 (XLSR-large) -> mean over time -> dense, tanh, out_proj: 7 emotion logits."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.wav2vec2 = Wav2Vec2Model(wav2vec2_config(config))
        num_labels = len(config.get("id2label") or {}) or 7
        self.classifier = EmotionClassifierHead(self.wav2vec2.config.hidden_size, num_labels)

    def forward(self, waveform: Tensor) -> Tensor:
        hidden = self.wav2vec2(waveform).last_hidden_state
        return self.classifier(hidden.mean(dim=1))


class EmotionEncoder(nn.Module):
    """Normalised 16 kHz waveform -> one probability vector over the emotion labels for the whole clip."""

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.wav2vec2_for_emotion = SpeechEmotionClassifier(config)

    def forward(self, waveform: Tensor) -> Tensor:
        """waveform (B, N) normalised, unpadded -> probabilities (B, labels)."""
        return self.wav2vec2_for_emotion(waveform).softmax(dim=-1)
