"""The flow-matching transformer (FMT): the vector field that carries noise to motion latents.

A DiT-style transformer over a 60-frame window (10 context frames from the previous chunk followed
by the 50 frames being generated). Unlike DiT, the condition is frame-wise: every frame gets its own
adaLN modulation from [reference motion, that frame's audio feature, emotion] plus the flow time, and
attention is limited to a band of +-2 frames. Names follow the released checkpoint (`fmt.*`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import FMTConfig


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


def attention_band(length: int, window: int, device: torch.device | None = None) -> Tensor:
    """(length, length) bool mask, True where query frame i may attend to key frame j: |i - j| <= window."""
    frames = torch.arange(length, device=device)
    return (frames[:, None] - frames[None, :]).abs() <= window


def sinusoid_table(length: int, dim: int) -> Tensor:
    """The classic transformer position table: sin on even channels, cos on odd ones.

    Only the initial value of `pos_embed`: the released checkpoint stores the table and is loaded as is.
    """
    positions = torch.arange(length, dtype=torch.float64)[:, None]
    rates = 10000.0 ** (-(2 * (torch.arange(dim) // 2)).double() / dim)
    angles = positions * rates
    table = torch.where(torch.arange(dim) % 2 == 0, torch.sin(angles), torch.cos(angles))
    return table.float()[None]


def flow_time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding (B, dim) of flow times t (B,) in [0, 1].

    t is used as is, where DiT scales it to [0, 1000], and the cos half comes first (FLOAT_SPEC §6.1).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Flow time t -> hidden vector: sinusoidal features, then a two-layer MLP."""

    def __init__(self, hidden_size: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: Tensor) -> Tensor:
        embedding = flow_time_embedding(t, self.frequency_dim)
        return self.mlp(embedding.to(self.mlp[0].weight.dtype))


class MotionEmbedder(nn.Module):
    """Motion latent -> hidden size (the checkpoint's `x_embedder.proj`)."""

    def __init__(self, motion_dim: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(motion_dim, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Attention(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(x.transpose(1, 2).reshape(batch, length, width))


class Mlp(nn.Module):
    def __init__(self, hidden_size: int, mlp_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, mlp_size)
        self.fc2 = nn.Linear(mlp_size, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class FMTBlock(nn.Module):
    """adaLN-Zero transformer block, modulated frame by frame by the condition c (B, L, hidden)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor, mask: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), mask)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """adaLN-modulated projection from hidden size back to the motion latent (the checkpoint's `decoder`)."""

    def __init__(self, hidden_size: int, motion_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.linear = nn.Linear(hidden_size, motion_dim)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class FlowMatchingTransformer(nn.Module):
    def __init__(self, config: FMTConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.x_embedder = MotionEmbedder(config.motion_dim, hidden)
        self.t_embedder = TimestepEmbedder(hidden, config.frequency_dim)
        self.c_embedder = nn.Linear(config.motion_dim + config.audio_dim + config.emotion_dim, hidden)
        # Frozen in training, but loaded from the checkpoint rather than recomputed (FLOAT_SPEC §10.11).
        self.pos_embed = nn.Parameter(sinusoid_table(config.sequence_length, hidden), requires_grad=False)
        self.blocks = nn.ModuleList(FMTBlock(hidden, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.decoder = FinalLayer(hidden, config.motion_dim)

    def forward(
        self,
        t: Tensor,
        x: Tensor,
        audio: Tensor,
        reference_motion: Tensor,
        emotion: Tensor,
        context_motion: Tensor,
        context_audio: Tensor,
    ) -> Tensor:
        """Vector field over the whole window, context frames included.

        t: flow time, shape (), (1,) or (B,). x: noisy motion chunk (B, L, D). audio: its audio features
        (B, L, A). reference_motion: (B, D). emotion: (B, E), or per window position (B, L' + L, E).
        context_motion / context_audio: the previous chunk's last L' motion latents and audio features
        (zeros for the first chunk). Returns (B, L' + L, D); the sampler keeps the last L frames.
        """
        length = context_motion.shape[1] + x.shape[1]
        h = self.x_embedder(torch.cat([context_motion, x], dim=1)) + self.pos_embed[:, :length]
        audio = torch.cat([context_audio, audio], dim=1)
        if emotion.dim() == 2:
            emotion = emotion[:, None]
        # Per-frame condition, concatenated in the checkpoint's column order: [reference, audio, emotion].
        condition = torch.cat(
            [
                reference_motion[:, None].expand(-1, length, -1),
                audio,
                emotion.to(audio.dtype).expand(-1, length, -1),
            ],
            dim=-1,
        )
        t = torch.as_tensor(t, device=x.device).reshape(-1)
        c = self.c_embedder(condition) + self.t_embedder(t)[:, None]
        mask = attention_band(length, self.config.attention_window, x.device)
        for block in self.blocks:
            h = block(h, c, mask)
        return self.decoder(h, c)


def guided_vector_field(
    fmt: FlowMatchingTransformer,
    t: Tensor,
    x: Tensor,
    audio: Tensor,
    reference_motion: Tensor,
    emotion: Tensor,
    context_motion: Tensor,
    context_audio: Tensor,
    audio_scale: float = 2.0,
    emotion_scale: float = 1.0,
) -> Tensor:
    """Classifier-free guided vector field (FLOAT_SPEC §6.6), all L' + L positions.

    Three branches in one batch of 3B: unconditional (no audio, no emotion), fully conditional, and
    audio without emotion; v = uncond + a (audio - uncond) + e (full - audio). The null condition is
    zeros. The reference motion and the context frames, context audio included, stay in every
    branch, as in the official model; there is no reference guidance. With both scales 1 this is
    one plain forward.
    """
    if audio_scale == 1 and emotion_scale == 1:
        return fmt(t, x, audio, reference_motion, emotion, context_motion, context_audio)

    def three(tensor: Tensor) -> Tensor:
        return torch.cat([tensor] * 3)

    no_audio, no_emotion = torch.zeros_like(audio), torch.zeros_like(emotion)
    t = torch.as_tensor(t, device=x.device).reshape(-1)
    out = fmt(
        three(t) if t.numel() > 1 else t,
        three(x),
        torch.cat([no_audio, audio, audio]),
        three(reference_motion),
        torch.cat([no_emotion, emotion, no_emotion]),
        three(context_motion),
        three(context_audio),
    )
    uncond, full, audio_only = out.chunk(3)
    return uncond + audio_scale * (audio_only - uncond) + emotion_scale * (full - audio_only)
