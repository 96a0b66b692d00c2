"""Phase 2's objective: conditional flow matching on the straight path, as pure functions.

    x_t = (1 - (1 - sigma_min) t) x0 + t x1,   target u = x1 - (1 - sigma_min) x0,   x0 ~ N(0, I), x1 = data
    loss = ||v - u||^2 + velocity_weight * ||diff(v) - diff(u)||^2      (over the L current frames only)

The L' context frames are clean ground truth and carry no loss (float issues #4, #19). Conditions are
dropped per sample, zeros standing for "no condition", which is what classifier-free guidance feeds
the unconditional branch at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from float_model.audio import project_audio
from float_model.fmt import FlowMatchingTransformer

from .config import FlowConfig


@dataclass
class Window:
    """A batch of training windows (context + chunk frames) and their per-sample randomness."""

    motion: Tensor  # (B, L' + L, D) motion latents of consecutive frames
    audio: Tensor  # (B, L' + L, F) stacked wav2vec2 states of the same frames
    reference: Tensor  # (B, D) motion latent of another frame of the same clip
    emotion: Tensor  # (B, E) the clip's emotion probabilities
    time: Tensor  # (B,) flow time
    noise: Tensor  # (B, L, D) x0
    keep: Tensor  # (B, 5) 1 keeps, 0 drops: audio, reference, emotion, context motion, context audio

    def to(self, device: torch.device) -> Window:
        return Window(**{name: value.to(device) for name, value in vars(self).items()})


class Phase2Model(nn.Module):
    """The networks phase 2 trains: the flow-matching transformer and the audio projection, under the
    module names of the FLOAT checkpoint so that export is a rename-free copy."""

    def __init__(self, fmt: FlowMatchingTransformer, audio_projection: nn.Sequential):
        super().__init__()
        self.fmt = fmt
        self.audio_projection = audio_projection

    def forward(self, window: Window, context: int, sigma_min: float) -> tuple[Tensor, Tensor]:
        """(predicted velocity, target velocity), both (B, L, D), for windows of `context` clean frames + L."""
        keep = window.keep.to(window.motion.dtype)
        audio = project_audio(self.audio_projection, window.audio)
        x1 = window.motion[:, context:]
        x0 = window.noise
        t = window.time[:, None, None]
        x_t = (1 - (1 - sigma_min) * t) * x0 + t * x1
        target = x1 - (1 - sigma_min) * x0
        velocity = self.fmt(
            window.time,
            x_t,
            audio[:, context:] * keep[:, 0, None, None],
            window.reference * keep[:, 1, None],
            window.emotion * keep[:, 2, None],
            window.motion[:, :context] * keep[:, 3, None, None],
            audio[:, :context] * keep[:, 4, None, None],
        )
        return velocity[:, context:], target


def sample_time(generator: torch.Generator, sampler: str) -> Tensor:
    """One flow time in (0, 1)."""
    if sampler == "uniform":
        return torch.rand((), generator=generator)
    if sampler == "logit_normal":  # SD3's: more steps in the middle of the path
        return torch.sigmoid(torch.randn((), generator=generator))
    raise ValueError(f"unknown time sampler {sampler!r}: uniform or logit_normal")


def keep_mask(generator: torch.Generator, flow: FlowConfig) -> Tensor:
    """Per-sample condition dropout: 1 keeps, 0 drops, for audio, reference, emotion, context motion and audio."""
    drop = torch.tensor([flow.drop_audio, flow.drop_reference, flow.drop_emotion, flow.drop_context_motion, flow.drop_context_audio])
    return (torch.rand(5, generator=generator) >= drop).float()


def flow_matching_loss(velocity: Tensor, target: Tensor, velocity_weight: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean squared error of the velocity, plus that of its one-frame differences (the paper's L_vel)."""
    flow_loss = (velocity.float() - target.float()).pow(2).mean()
    difference_loss = (velocity.diff(dim=1).float() - target.diff(dim=1).float()).pow(2).mean()
    loss = flow_loss + velocity_weight * difference_loss
    return loss, {"loss": loss.detach(), "flow": flow_loss.detach(), "velocity": difference_loss.detach()}
