"""FVD: the Fréchet distance between I3D features of 16-frame windows of real and generated videos.

The network is the Kinetics-400 I3D of the original FVD (Unterthiner et al. 2018, TF-Hub), as the
TorchScript file that StyleGAN-V made and most video papers since use: `i3d_torchscript.pt`. It is
called as StyleGAN-V calls it: uint8 videos (N, 3, T, H, W) with rescale=True (to [-1, 1]), resize=True
(to 224 x 224) and return_features=True (the 400 logits before the softmax).

Each video is cut into consecutive, non-overlapping windows of 16 frames (a shorter tail is dropped);
every window is one sample. TorchScript files are not pickles: loading one runs no Python code.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from .frechet import frechet_score
from .registry import Metric, MetricContext, Score, WeightFile, WeightsError
from .videos import Video

WEIGHTS = WeightFile(
    "i3d_torchscript.pt",
    "StyleGAN-V's TorchScript I3D (Kinetics-400, the TF-Hub FVD network), linked from "
    "src/metrics/frechet_video_distance.py of github.com/universome/stylegan-v",
)
WINDOW = 16
WINDOWS_PER_BATCH = 4


def load_i3d(path, device: torch.device) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in PyTorch, but it is the file's format
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError as error:
        raise WeightsError(f"{path} is not a TorchScript file ({error}); FVD needs StyleGAN-V's i3d_torchscript.pt") from error


def windows(video: Video) -> Tensor:
    """(W, 3, 16, H, W) uint8: the video's consecutive 16-frame windows, channels first."""
    count = len(video.frames) // WINDOW
    frames = torch.from_numpy(video.frames[: count * WINDOW])
    return frames.reshape(count, WINDOW, *frames.shape[1:]).permute(0, 4, 1, 2, 3)


def i3d_features(network: torch.jit.ScriptModule, videos: Sequence[Video], device: torch.device) -> Tensor:
    features = []
    for video in videos:
        clips = windows(video)
        for start in range(0, len(clips), WINDOWS_PER_BATCH):
            batch = clips[start : start + WINDOWS_PER_BATCH].to(device)
            features.append(network(batch, rescale=True, resize=True, return_features=True).float().cpu())
    return torch.cat(features) if features else torch.empty(0, 0)


def compute_fvd(real: Sequence[Video], generated: Sequence[Video], context: MetricContext) -> Score:
    network = load_i3d(context.weights[WEIGHTS.name], context.device)
    real_features = i3d_features(network, real, context.device)
    generated_features = i3d_features(network, generated, context.device)
    return frechet_score("FVD", "windows", real_features, generated_features)


FVD = Metric("fvd", f"Fréchet Video Distance over {WINDOW}-frame windows (temporal quality)", (WEIGHTS,), compute_fvd)
