"""Sampling motion: integrate the FMT vector field from noise (t = 0) to motion latents (t = 1).

The clip is generated in chunks of 50 frames (2 s at 25 fps). Each chunk sees the last 10 sampled
motion latents and audio features of the previous one as context (zeros for the first), which is
all that ties chunks together: there is no overlap or cross-fade. The last chunk's audio features
are padded by repeating the last frame and the result is cut back to T frames.

Two modes share everything but the time grid and the noise:

| | official | default |
|---|---|---|
| `nfe` | points of the time grid `linspace(0, 1, nfe)`: nfe - 1 Euler evaluations | guided evaluations per chunk: grid `linspace(0, 1, steps + 1)` |
| solvers | Euler | Euler (nfe steps), midpoint (nfe even), RK4 (nfe multiple of 4) |
| seed | a fresh CPU generator seeded `seed` for every chunk: every chunk starts from the same noise | batch item b draws from one CPU generator seeded `seed + b`, consumed chunk by chunk |
| no seed | the global RNG | the global RNG |

In both, guidance keeps the reference motion and the context in every branch (see `fmt.guided_vector_field`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .model import FloatModel

SOLVERS = ("euler", "midpoint", "rk4")
_EVALUATIONS_PER_STEP = {"euler": 1, "midpoint": 2, "rk4": 4}


@dataclass(frozen=True)
class SamplingProgress:
    """Passed to the callback after every vector-field evaluation; `chunk_motion` is set when a chunk is done."""

    evaluations_done: int
    evaluations_total: int
    chunk: int
    chunks: int
    chunk_motion: Tensor | None = None


def time_grid(nfe: int, solver: str, official: bool) -> Tensor:
    """The fixed time grid of the ODE solve, validated against the solver."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    if official:
        if solver != "euler":
            raise ValueError(f"official mode samples with Euler only, not {solver!r}: turn official mode off to use {solver}")
        if nfe < 2:
            raise ValueError(f"official mode needs nfe >= 2 (the grid has nfe points, nfe - 1 steps), got {nfe}")
        return torch.linspace(0, 1, nfe)
    per_step = _EVALUATIONS_PER_STEP[solver]
    if nfe < 1 or nfe % per_step:
        raise ValueError(f"the {solver} solver uses {per_step} evaluations per step, so nfe must be a positive multiple of {per_step}, got {nfe}")
    return torch.linspace(0, 1, nfe // per_step + 1)


def ode_step(velocity: Callable[[Tensor, Tensor], Tensor], solver: str, t0: Tensor, t1: Tensor, x: Tensor) -> Tensor:
    """One fixed-grid step from t0 to t1."""
    dt = t1 - t0
    if solver == "euler":
        return x + dt * velocity(t0, x)
    if solver == "midpoint":
        half = t0 + dt / 2
        return x + dt * velocity(half, x + dt / 2 * velocity(t0, x))
    k1 = velocity(t0, x)
    k2 = velocity(t0 + dt / 2, x + dt / 2 * k1)
    k3 = velocity(t0 + dt / 2, x + dt / 2 * k2)
    k4 = velocity(t1, x + dt * k3)
    return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def pad_frames(tensor: Tensor, length: int) -> Tensor:
    """Repeat the last frame until (B, length, C)."""
    missing = length - tensor.shape[1]
    return torch.cat([tensor, tensor[:, -1:].expand(-1, missing, -1)], dim=1) if missing > 0 else tensor


class _NoiseSource:
    """Initial noise of each chunk, on the CPU so that a seed gives the same numbers on every device."""

    def __init__(self, shape: tuple[int, int, int], seed: int | None, noise: Sequence[Tensor] | None, num_chunks: int, official: bool):
        self.shape, self.seed, self.noise, self.official = shape, seed, noise, official
        if noise is not None:
            if len(noise) != num_chunks:
                raise ValueError(f"explicit noise needs one tensor per chunk: {num_chunks} chunks, got {len(noise)} tensors")
            for i, tensor in enumerate(noise):
                if tuple(tensor.shape) != shape:
                    raise ValueError(f"noise tensor {i} has shape {tuple(tensor.shape)}, expected {shape}")
        elif seed is not None and not official:
            self.generators = [torch.Generator().manual_seed(seed + b) for b in range(shape[0])]

    def __call__(self, chunk: int) -> Tensor:
        if self.noise is not None:
            return self.noise[chunk].float()
        if self.seed is None:
            return torch.randn(self.shape)
        if self.official:
            return torch.randn(self.shape, generator=torch.Generator().manual_seed(self.seed))
        return torch.stack([torch.randn(self.shape[1:], generator=g) for g in self.generators])


def iter_sample_motion(
    model: FloatModel,
    audio_features: Tensor,
    reference_motion: Tensor,
    emotion: Tensor,
    nfe: int = 10,
    solver: str = "euler",
    audio_scale: float = 2.0,
    emotion_scale: float = 1.0,
    seed: int | None = None,
    noise: Sequence[Tensor] | None = None,
    official: bool = False,
    callback: Callable[[SamplingProgress], None] | None = None,
) -> Iterator[Tensor]:
    """Yield the motion latents chunk by chunk: (B, 50, D) each, the last one cut to T.

    audio_features (B, T, A); reference_motion (B, D); emotion (B, E) for the clip or (B, T, E) per
    frame; noise: one (B, 50, D) tensor per chunk, instead of a seed. The callback may raise to cancel.
    """
    config = model.config.fmt
    batch, frames = audio_features.shape[:2]
    if frames < 1:
        raise ValueError("no audio frames to sample motion for")
    if reference_motion.shape != (batch, config.motion_dim):
        raise ValueError(f"reference motion must be (B, {config.motion_dim}) with B = {batch}, got {tuple(reference_motion.shape)}")
    per_frame_emotion = emotion.dim() == 3
    if emotion.shape[0] != batch or (per_frame_emotion and emotion.shape[1] != frames):
        raise ValueError(f"emotion must be (B, {config.emotion_dim}) or (B, T, {config.emotion_dim}) with B = {batch}, T = {frames}; got {tuple(emotion.shape)}")
    grid = time_grid(nfe, solver, official).to(model.device)
    chunk_length, context_length = config.num_frames, config.num_prev_frames
    num_chunks = -(-frames // chunk_length)
    evaluations = (len(grid) - 1) * _EVALUATIONS_PER_STEP[solver]
    draw_noise = _NoiseSource((batch, chunk_length, config.motion_dim), seed, noise, num_chunks, official)

    audio_features = model.cast(audio_features)
    reference_motion = model.cast(reference_motion)
    emotion = model.cast(emotion)
    # All chunks' noise in one host-to-device copy, none inside the loop (a few MB even for long clips).
    initial_noise = model.cast(torch.stack([draw_noise(chunk) for chunk in range(num_chunks)]))
    context_motion = audio_features.new_zeros(batch, context_length, config.motion_dim)
    context_audio = audio_features.new_zeros(batch, context_length, config.audio_dim)
    done = 0
    for chunk in range(num_chunks):
        start = chunk * chunk_length
        chunk_audio = pad_frames(audio_features[:, start : start + chunk_length], chunk_length)
        if per_frame_emotion:
            # the context positions carry the emotion of the frames they came from (frame 0's for chunk 0)
            window = emotion[:, max(start - context_length, 0) : start + chunk_length]
            window = torch.cat([window[:, :1].expand(-1, context_length - min(start, context_length), -1), window], dim=1)
            chunk_emotion = pad_frames(window, context_length + chunk_length)
        else:
            chunk_emotion = emotion

        def velocity(t: Tensor, x: Tensor) -> Tensor:
            nonlocal done
            v = model.vector_field(t, x, chunk_audio, reference_motion, chunk_emotion, context_motion, context_audio, audio_scale, emotion_scale)
            done += 1
            if callback is not None:
                callback(SamplingProgress(done, evaluations * num_chunks, chunk, num_chunks))
            return v[:, context_length:]

        x = initial_noise[chunk]
        with torch.no_grad():
            for t0, t1 in zip(grid[:-1], grid[1:]):
                x = ode_step(velocity, solver, t0, t1, x)
        context_motion, context_audio = x[:, -context_length:], chunk_audio[:, -context_length:]
        motion = x[:, : frames - start]
        if callback is not None:
            callback(SamplingProgress(done, evaluations * num_chunks, chunk, num_chunks, chunk_motion=motion))
        yield motion


def sample_motion(model: FloatModel, audio_features: Tensor, reference_motion: Tensor, emotion: Tensor, **settings) -> Tensor:
    """Motion latents (B, T, D) for the whole clip; the settings are those of `iter_sample_motion`."""
    return torch.cat(list(iter_sample_motion(model, audio_features, reference_motion, emotion, **settings)), dim=1)
