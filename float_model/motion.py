"""Working with sampled motion: frame-rate conversion, edits in the motion basis, damping,
smoothing, and saving to disk.

A motion sequence is a tensor (B, T, D) of absolute motion latents at some frame rate (the model
samples at 25 fps); a frame is rendered as identity latent + motion latent.
"""

from __future__ import annotations

import math
from pathlib import Path

import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor

MOTION_FORMAT = "float-motion-1"


def num_output_frames(seconds: float, fps: float) -> int:
    """Frames of a video that lasts as long as its audio: every started frame counts."""
    if not 1 <= fps <= 240:
        raise ValueError(f"fps must be between 1 and 240, got {fps}")
    return max(1, math.ceil(seconds * fps - 1e-9))


def resample_motion(motion: Tensor, seconds: float, fps: float, source_fps: float = 25.0) -> Tensor:
    """Motion (B, T, D) at `source_fps` -> (B, ceil(seconds * fps), D) at `fps`, by linear interpolation
    in time. `seconds` is the audio's duration, so the video ends with the sound."""
    frames = num_output_frames(seconds, fps)
    position = (torch.arange(frames, dtype=torch.float64) / fps * source_fps).clamp(max=motion.shape[1] - 1)
    before = position.floor().long()
    after = (before + 1).clamp(max=motion.shape[1] - 1)
    weight = (position - before).to(motion.dtype).to(motion.device)[None, :, None]
    return motion[:, before] * (1 - weight) + motion[:, after] * weight


def basis_coefficients(motion: Tensor, basis: Tensor) -> Tensor:
    """Motion (..., D) -> its coordinates (..., K) along the orthonormal basis columns (D, K)."""
    return motion @ basis.to(motion.dtype)


def edit_motion(motion: Tensor, basis: Tensor, scale: Tensor | None = None, offset: Tensor | None = None) -> Tensor:
    """Scale, then offset, the coordinates of the motion along the basis directions (each (K,)); the
    part of the motion outside the basis's span is kept as it is. No edit returns the motion unchanged."""
    coefficients = basis_coefficients(motion, basis)
    basis = basis.to(motion.dtype)
    outside = motion - coefficients @ basis.T
    if scale is not None:
        coefficients = coefficients * scale.to(motion)
    if offset is not None:
        coefficients = coefficients + offset.to(motion)
    return outside + coefficients @ basis.T


def damp_motion(motion: Tensor, reference_motion: Tensor, strength: float) -> Tensor:
    """Scale the motion's deviation from the reference motion (B, D): 0 freezes it, 1 keeps it, >1 exaggerates."""
    return reference_motion[:, None] + (motion - reference_motion[:, None]) * strength


def smooth_motion(motion: Tensor, sigma_frames: float) -> Tensor:
    """Gaussian smoothing along time (sigma in frames, 0 = none); the ends are padded by repetition."""
    if sigma_frames <= 0:
        return motion
    radius = max(1, math.ceil(3 * sigma_frames))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (taps / sigma_frames) ** 2)
    kernel = (kernel / kernel.sum()).to(motion)
    batch, frames, dim = motion.shape
    x = motion.permute(0, 2, 1).reshape(batch * dim, 1, frames)
    x = F.pad(x, (radius, radius), mode="replicate")
    return F.conv1d(x, kernel.view(1, 1, -1)).reshape(batch, dim, frames).permute(0, 2, 1)


def save_motion(path: str | Path, motion: Tensor, fps: float, model_config_json: str | None = None) -> None:
    """Write motion (B, T, D) as safetensors with its frame rate, and the model's configuration for provenance."""
    metadata = {"format": MOTION_FORMAT, "fps": repr(float(fps))}
    if model_config_json is not None:
        metadata["model"] = model_config_json
    safetensors.torch.save_file({"motion": motion.detach().float().contiguous().cpu()}, str(path), metadata=metadata)


def load_motion(path: str | Path, latent_dim: int | None = None) -> tuple[Tensor, float]:
    """Read a motion file -> (motion (B, T, D), fps). With `latent_dim`, refuse motion of another model size."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"motion file not found: {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            motion = file.get_tensor("motion") if "motion" in file.keys() else None
    except Exception as error:
        raise ValueError(f"{path} is not a readable motion file ({error})") from error
    if metadata.get("format") != MOTION_FORMAT or motion is None:
        raise ValueError(f"{path} is not a FLOAT motion file (written by save_motion)")
    if latent_dim is not None and motion.shape[-1] != latent_dim:
        raise ValueError(f"{path} holds motion latents of width {motion.shape[-1]}, but the model's are {latent_dim}")
    return motion, float(metadata["fps"])
