"""Phase 1's losses and critics: VGG-19 perceptual losses (whole image and facial components), a 2-scale
patch discriminator for the whole face, eye and lip discriminators on crops, and Gram-matrix feature-style
matching on their features.

VGG-19 is defined here with torchvision's parameter names, so torchvision's ImageNet file loads into it
without torchvision installed.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_SHA256_PREFIX = "dcbb9e9d"  # torchvision names its files after the start of their sha256
# Convolution widths of VGG-19's feature stack, "M" a 2x2 max-pool: torchvision's indices follow from it.
VGG19_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
# Indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in `features`.
VGG19_TAPS = (1, 6, 11, 20, 29)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """VGG-19's convolutional stack up to relu5_1, returning the activations at the five taps."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in VGG19_LAYERS:
            if width == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers[: VGG19_TAPS[-1] + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> list[Tensor]:
        """image (B, 3, H, W) in [-1, 1] -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]."""
        x = ((image.float() + 1) / 2 - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG19_TAPS:
                taps.append(x)
        return taps


def load_vgg19(source: str, cache_dir: Path = Path.home() / ".cache" / "float_training") -> VGG19Features:
    """VGG-19 with ImageNet weights from a file, from download.pytorch.org ("download"), or random ("random",
    only to exercise the code: the perceptual losses mean nothing without the real weights). Frozen."""
    network = VGG19Features()
    if source != "random":
        path = Path(source) if source != "download" else cache_dir / Path(VGG19_URL).name
        if source == "download" and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                urllib.request.urlretrieve(VGG19_URL, path.with_suffix(".part"))
            except OSError as error:
                raise RuntimeError(
                    f"could not download VGG-19's weights ({error}): fetch {VGG19_URL} by hand and set loss.vgg=/path/to/vgg19-dcbb9e9d.pth"
                ) from error
            path.with_suffix(".part").rename(path)
        if not path.is_file():
            raise FileNotFoundError(f"VGG-19 weights not found at {path}: set loss.vgg to torchvision's vgg19-dcbb9e9d.pth, or loss.vgg=download")
        if source == "download" and hashlib.sha256(path.read_bytes()).hexdigest()[:8] != VGG19_SHA256_PREFIX:
            path.unlink()
            raise RuntimeError(f"the downloaded VGG-19 file was corrupt and is deleted: run again, or fetch {VGG19_URL} by hand")
        state = torch.load(path, map_location="cpu", weights_only=True)
        features = {key: value for key, value in state.items() if key.startswith("features.") and int(key.split(".")[1]) <= VGG19_TAPS[-1]}
        missing = network.load_state_dict(features, strict=False).missing_keys
        if missing:
            raise ValueError(f"{path} is not torchvision's VGG-19 (missing {missing[:3]})")
    return network.requires_grad_(False).eval()


def perceptual_loss(vgg: VGG19Features, fake: Tensor, real: Tensor, scales: tuple[float, ...] = (1, 0.5, 0.25, 0.125)) -> Tensor:
    """L1 between VGG-19 activations of the two images, summed over 4 image scales and the 5 taps. Scales
    under 16 px, too small for VGG's four poolings before relu5_1, are left out (tiny test models only)."""
    total = fake.new_zeros((), dtype=torch.float32)
    for scale in (s for s in scales if fake.shape[-1] * s >= 16):
        if scale != 1:
            fake_s = F.interpolate(fake, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
            real_s = F.interpolate(real, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
        else:
            fake_s, real_s = fake, real
        for a, b in zip(vgg(fake_s), vgg(real_s)):
            total = total + (a - b.detach()).abs().mean()
    return total


def box_mask(boxes: Tensor, size: int) -> Tensor:
    """(B, K, 4) boxes [x0, y0, x1, y1] in pixels -> (B, 1, size, size) binary mask of their union."""
    grid = torch.arange(size, device=boxes.device, dtype=torch.float32) + 0.5
    x = (grid[None, None, None, :] >= boxes[..., 0, None, None]) & (grid[None, None, None, :] < boxes[..., 2, None, None])
    y = (grid[None, None, :, None] >= boxes[..., 1, None, None]) & (grid[None, None, :, None] < boxes[..., 3, None, None])
    return (x & y).any(dim=1, keepdim=True).float()


def component_perceptual_loss(vgg: VGG19Features, fake: Tensor, real: Tensor, boxes: Tensor) -> Tensor:
    """The facial-component perceptual loss: VGG activations compared only inside the eye and mouth boxes,
    the mask resized to each of the first 4 taps, each term divided by the masked area."""
    mask = box_mask(boxes, fake.shape[-1])
    total = fake.new_zeros((), dtype=torch.float32)
    for a, b in list(zip(vgg(fake), vgg(real)))[:4]:
        m = F.interpolate(mask, size=a.shape[-2:], mode="nearest")
        total = total + ((a - b.detach()).abs() * m).sum() / (m.sum() * a.shape[1]).clamp(min=1)
    return total


def crop_boxes(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Bilinear crops (N, C, size, size) of boxes (N, 4) [x0, y0, x1, y1] in pixels of images (N, C, H, W):
    the RoI-align of the component losses, differentiable and without torchvision."""
    height, width = images.shape[-2:]
    centre_x = (boxes[:, 0] + boxes[:, 2]) / width - 1
    centre_y = (boxes[:, 1] + boxes[:, 3]) / height - 1
    theta = torch.zeros(len(boxes), 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = (boxes[:, 2] - boxes[:, 0]) / width
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = (boxes[:, 3] - boxes[:, 1]) / height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [len(boxes), images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _down(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2))


class PatchDiscriminator(nn.Module):
    """A patch critic: strided convolutions down to a map of real/fake logits, one per receptive field."""

    def __init__(self, channels: int = 64, levels: int = 4):
        super().__init__()
        widths = [3] + [min(channels * 2**i, 512) for i in range(levels)]
        self.body = nn.Sequential(*(_down(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.head = nn.Conv2d(widths[-1], 1, 3, padding=1)

    def forward(self, image: Tensor) -> Tensor:
        return self.head(self.body(image))


class TwoScaleDiscriminator(nn.Module):
    """The whole-face critic: one patch discriminator on the image, one on the image at half size."""

    def __init__(self, channels: int = 64, levels: int = 4):
        super().__init__()
        self.full_size = PatchDiscriminator(channels, levels)
        self.half_size = PatchDiscriminator(channels, levels)

    def forward(self, image: Tensor) -> list[Tensor]:
        return [self.full_size(image), self.half_size(F.avg_pool2d(image, 2))]


class ComponentDiscriminator(nn.Module):
    """A critic of eye or lip crops that also returns two feature maps, for the Gram-matrix style loss."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.LeakyReLU(0.2), _down(channels, channels * 2))
        self.block2 = nn.Sequential(nn.Conv2d(channels * 2, channels * 2, 3, padding=1), nn.LeakyReLU(0.2), _down(channels * 2, channels * 4))
        self.head = nn.Conv2d(channels * 4, 1, 3, padding=1)

    def forward(self, crops: Tensor) -> tuple[Tensor, list[Tensor]]:
        first = self.block1(crops)
        second = self.block2(first)
        return self.head(second), [first, second]


def gram(features: Tensor) -> Tensor:
    batch, channels, height, width = features.shape
    flat = features.float().reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


def style_loss(fake_features: list[Tensor], real_features: list[Tensor]) -> Tensor:
    """Feature-style matching: L1 between Gram matrices of the critic's features on fake and real crops."""
    return sum((gram(a) - gram(b).detach()).abs().mean() for a, b in zip(fake_features, real_features))


def generator_adversarial(logits: Tensor | list[Tensor]) -> Tensor:
    """Non-saturating: -log D(fake) = softplus(-logit)."""
    logits = logits if isinstance(logits, list) else [logits]
    return sum(F.softplus(-x.float()).mean() for x in logits)


def critic_adversarial(real: Tensor | list[Tensor], fake: Tensor | list[Tensor]) -> Tensor:
    """-log D(real) - log(1 - D(fake))."""
    real = real if isinstance(real, list) else [real]
    fake = fake if isinstance(fake, list) else [fake]
    return sum(F.softplus(-r.float()).mean() + F.softplus(f.float()).mean() for r, f in zip(real, fake))
