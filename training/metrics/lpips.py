"""LPIPS (Zhang et al. 2018, v0.1, AlexNet): perceptual distance between each generated frame and the real
frame at the same time step.

    LPIPS(x, y) = sum over layers l of  mean over pixels of  w_l · (f̂_l(x) - f̂_l(y))²

f̂_l are the ReLU outputs of AlexNet's five convolutions, each normalised to unit length along the
channels; w_l (one weight per channel) are the learned linear heads. Images in [-1, 1] are first shifted
and scaled by LPIPS' fixed per-channel constants. The definition is this project's own; it loads:

- `alexnet-owt-7be5be79.pth`: torchvision's ImageNet AlexNet (keys features.N.*; classifier.* unused);
- `alex.pth`: the v0.1 linear heads (keys linK.model.1.weight), shipped inside the `lpips` wheel as
  lpips/weights/v0.1/alex.pth (BSD-2-Clause).

Frames are compared at the evaluation's common size; a pair whose videos differ in length is compared
over the shorter one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .registry import Metric, MetricContext, NotEnoughData, Score, WeightFile, WeightsError, load_state, load_tensors
from .videos import Video

BACKBONE = WeightFile(
    "alexnet-owt-7be5be79.pth",
    "torchvision's ImageNet AlexNet weights (the file torchvision's alexnet(weights='IMAGENET1K_V1') downloads, BSD-3-Clause)",
)
HEADS = WeightFile(
    "alex.pth",
    "LPIPS v0.1's linear heads for AlexNet, shipped in the `lpips` wheel as lpips/weights/v0.1/alex.pth "
    "(`pip download lpips --no-deps`, then unzip; BSD-2-Clause)",
)
CHANNELS = (64, 192, 384, 256, 256)
# LPIPS' input normalisation for images in [-1, 1] (ImageNet statistics re-expressed for that range).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
BATCH = 16


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional part, indexed as torchvision's `features` so that its weights load by key."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: Tensor) -> list[Tensor]:
        """The output of each of the five ReLUs after a convolution."""
        taps = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                taps.append(x)
        return taps


class LPIPS(nn.Module):
    """Distance (N,) between image batches (N, 3, H, W) in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.backbone = AlexNetFeatures()
        self.heads = nn.ModuleList(nn.Conv2d(channels, 1, 1, bias=False) for channels in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        taps_x = self.backbone((x - self.shift) / self.scale)
        taps_y = self.backbone((y - self.shift) / self.scale)
        distance = torch.zeros(x.shape[0], device=x.device)
        for head, fx, fy in zip(self.heads, taps_x, taps_y):
            difference = (_unit_channels(fx) - _unit_channels(fy)) ** 2
            distance = distance + head(difference).mean(dim=(1, 2, 3))
        return distance


def _unit_channels(features: Tensor, eps: float = 1e-10) -> Tensor:
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def load_lpips(backbone_path, heads_path, device: torch.device) -> LPIPS:
    network = LPIPS()
    load_state(network.backbone, load_tensors(backbone_path), backbone_path, ignore_prefixes=("classifier.",))
    heads = load_tensors(heads_path)
    expected = {f"lin{k}.model.1.weight" for k in range(len(CHANNELS))}
    if set(heads) != expected:
        raise WeightsError(f"{heads_path} is not LPIPS' alex.pth: expected the keys {sorted(expected)}, found {sorted(heads)[:6]}")
    load_state(network.heads, {f"{k}.weight": heads[f"lin{k}.model.1.weight"] for k in range(len(CHANNELS))}, heads_path)
    return network.eval().to(device)


def to_signed_images(frames, device: torch.device) -> Tensor:
    """(n, H, W, 3) uint8 array -> (n, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


def compute_lpips(real: Sequence[Video], generated: Sequence[Video], context: MetricContext) -> Score:
    network = load_lpips(context.weights[BACKBONE.name], context.weights[HEADS.name], context.device)
    distances = []
    shortened = 0
    for real_video, generated_video in zip(real, generated):
        length = min(len(real_video.frames), len(generated_video.frames))
        shortened += len(real_video.frames) != len(generated_video.frames)
        for start in range(0, length, BATCH):
            end = min(start + BATCH, length)
            x = to_signed_images(real_video.frames[start:end], context.device)
            y = to_signed_images(generated_video.frames[start:end], context.device)
            distances.append(network(x, y).cpu())
    if not distances:
        raise NotEnoughData("LPIPS needs at least one pair of frames")
    values = torch.cat(distances)
    notes = (f"{shortened} pairs differ in length: compared over the shorter video",) if shortened else ()
    return Score({"LPIPS": float(values.mean())}, counts={"frame_pairs": len(values)}, notes=notes)


LPIPS_METRIC = Metric("lpips", "LPIPS (AlexNet, v0.1) between paired frames (perceptual reconstruction error)", (BACKBONE, HEADS), compute_lpips)
