"""FID: the Fréchet distance between Inception-v3 pool features of real and generated frames.

The network is the FID Inception: TensorFlow's 2015-12-05 Inception-v3 graph (the one every FID number
since Heusel et al. 2017 is computed with), as ported to PyTorch by pytorch-fid. The definition below is
this project's own, with the module names of torchvision's Inception3 so that pytorch-fid's weights file
`pt_inception-2015-12-05-6726825d.pth` loads by key name. The port differs from torchvision's
ImageNet Inception in a few places, kept here so the features match TensorFlow's:

- average pools in the A, C and first E blocks leave padding out of the average (count_include_pad=False);
- the last E block pools its side branch with a max pool instead of an average pool;
- the classifier has 1008 classes (in the file, not used: FID takes the 2048 pool features).

Frames are read as RGB in [0, 1], resized to 299 x 299 (bilinear, as pytorch-fid), scaled to [-1, 1].
All frames of all videos count, real against generated (FLOAT reports FID over frames).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .frechet import frechet_score
from .registry import Metric, MetricContext, Score, WeightFile, load_state, load_tensors
from .videos import Video

WEIGHTS = WeightFile(
    "pt_inception-2015-12-05-6726825d.pth",
    "pytorch-fid's port of the TensorFlow FID Inception (asset of the 'fid_weights' release of "
    "github.com/mseitzer/pytorch-fid, Apache-2.0)",
)
INPUT_SIZE = 299
BATCH = 32


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (TensorFlow's epsilon 0.001), ReLU: Inception's basic layer."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int | tuple[int, int], stride: int = 1, padding: int | tuple[int, int] = 0):
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(channels_out, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _average_pool(x: Tensor) -> Tensor:
    """3x3 stride-1 average that ignores the zero padding at the borders, as TensorFlow's pooling does."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, channels_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(channels_in, 64, 1)
        self.branch5x5_1 = ConvBN(channels_in, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(channels_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(channels_in, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_average_pool(x)),
        ], dim=1)  # fmt: skip


class InceptionB(nn.Module):
    """35 -> 17 reduction: strided 3x3, strided double 3x3 and max-pooled branches."""

    def __init__(self, channels_in: int):
        super().__init__()
        self.branch3x3 = ConvBN(channels_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(channels_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], dim=1)  # fmt: skip


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 then 7x1)."""

    def __init__(self, channels_in: int, channels_7x7: int):
        super().__init__()
        c = channels_7x7
        self.branch1x1 = ConvBN(channels_in, 192, 1)
        self.branch7x7_1 = ConvBN(channels_in, c, 1)
        self.branch7x7_2 = ConvBN(c, c, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(channels_in, c, 1)
        self.branch7x7dbl_2 = ConvBN(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c, c, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c, c, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(channels_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        double = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            double = layer(double)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_average_pool(x)),
        ], dim=1)  # fmt: skip


class InceptionD(nn.Module):
    """17 -> 8 reduction."""

    def __init__(self, channels_in: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(channels_in, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(channels_in, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))),
            F.max_pool2d(x, 3, stride=2),
        ], dim=1)  # fmt: skip


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs; `max_pool` selects the FID port's last-block variant."""

    def __init__(self, channels_in: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(channels_in, 320, 1)
        self.branch3x3_1 = ConvBN(channels_in, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(channels_in, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(channels_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _average_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], dim=1)  # fmt: skip


class FIDInception(nn.Module):
    """Inception-v3 up to its 2048-d global average pool, as FID uses it. Input: (N, 3, H, W) RGB in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)

    def forward(self, images: Tensor) -> Tensor:
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False) * 2 - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def load_inception(path, device: torch.device) -> FIDInception:
    """The FID Inception with pytorch-fid's weights; the file's 1008-class classifier (fc.*) is not used."""
    network = FIDInception()
    load_state(network, load_tensors(path), path, ignore_prefixes=("fc.",))
    return network.eval().to(device)


def frame_batches(videos: Sequence[Video], batch: int) -> Iterator[np.ndarray]:
    """The frames of every video, in batches of up to `batch` (a batch never spans two videos)."""
    for video in videos:
        for start in range(0, len(video.frames), batch):
            yield video.frames[start : start + batch]


def to_unit_images(frames: np.ndarray, device: torch.device) -> Tensor:
    """(n, H, W, 3) uint8 -> (n, 3, H, W) float in [0, 1] on `device`."""
    return torch.from_numpy(frames).to(device).permute(0, 3, 1, 2).float() / 255


def inception_features(network: FIDInception, videos: Sequence[Video], device: torch.device) -> Tensor:
    """(frames, 2048) pool features of every frame of every video."""
    return torch.cat([network(to_unit_images(batch, device)).cpu() for batch in frame_batches(videos, BATCH)])


def compute_fid(real: Sequence[Video], generated: Sequence[Video], context: MetricContext) -> Score:
    network = load_inception(context.weights[WEIGHTS.name], context.device)
    real_features = inception_features(network, real, context.device)
    generated_features = inception_features(network, generated, context.device)
    return frechet_score("FID", "frames", real_features, generated_features)


FID = Metric("fid", "Fréchet Inception Distance over all frames (image quality)", (WEIGHTS,), compute_fid)
