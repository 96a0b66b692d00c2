"""The motion auto-encoder: a LIA generator (Latent Image Animator) at 512 px.

The encoder splits a portrait into an identity latent (appearance), 20 motion coefficients and a
feature pyramid. The motion basis turns coefficients into a 512-d motion latent along 20 learned
orthonormal directions. The decoder renders identity latent + motion latent: a StyleGAN2-style
synthesis network whose ToFlow layers warp the encoder's features, with ToRGB skips building the image.

Module and parameter names follow the released checkpoint (`motion_autoencoder.enc.*`,
`motion_autoencoder.dec.*`), so it loads by name. Weights use StyleGAN2's equalized learning rate:
stored N(0, 1), scaled by 1/sqrt(fan_in) at run time.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MotionAutoEncoderConfig

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


def blur_kernel(device: torch.device, dtype: torch.dtype, gain: float = 1.0) -> Tensor:
    """The 4x4 binomial low-pass filter [1,3,3,1] x [1,3,3,1] / 64, times `gain`.

    A constant, so it is not a parameter; released files that carry it as a buffer are accepted
    and checked against it by the loader.
    """
    taps = torch.tensor(BLUR_TAPS, device=device, dtype=torch.float32)
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum() * gain).to(dtype)


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample by zero insertion, pad, filter, downsample; per channel, the same along H and W."""
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))  # a negative pad crops
    weight = torch.flip(kernel, (0, 1)).expand(channels, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=channels)
    return x[:, :, ::down, ::down]


class Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.pad = pad
        self.gain = upsample_factor**2  # keeps the mean after zero-insertion upsampling

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, blur_kernel(x.device, x.dtype, self.gain), pad=self.pad)


class Upsample(nn.Module):
    """x2 upsampling with the blur filter, used on the ToRGB / ToFlow skip connections."""

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, blur_kernel(x.device, x.dtype, 4.0), up=2, pad=(2, 1))


class EqualConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.scale = 1 / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class FusedLeakyReLU(nn.Module):
    """Bias, leaky ReLU (slope 0.2), then a sqrt(2) gain that keeps the activations' variance."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x + self.bias, 0.2) * math.sqrt(2)


def conv_layer(in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False, activate: bool = True) -> nn.Sequential:
    """[Blur,] EqualConv2d, [FusedLeakyReLU]: the submodule indices are the `.0/.1/.2` of the checkpoint keys."""
    layers: list[nn.Module] = []
    if downsample:
        p = (len(BLUR_TAPS) - 2) + (kernel_size - 1)
        layers.append(Blur(pad=((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=2))
    else:
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2))
    if activate:
        layers.append(FusedLeakyReLU(out_channels))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs beside a 1x1 skip, both halving the resolution; the sum is scaled back by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = conv_layer(in_channels, in_channels, 3)
        self.conv2 = conv_layer(in_channels, out_channels, 3, downsample=True)
        self.skip = conv_layer(in_channels, out_channels, 1, downsample=True, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class EncoderApp(nn.Module):
    """Image -> identity latent and the feature pyramid the decoder warps."""

    def __init__(self, config: MotionAutoEncoderConfig):
        super().__init__()
        size = config.image_size
        convs: list[nn.Module] = [conv_layer(3, config.channels(size), 1)]
        for _ in range(config.num_levels):
            convs.append(ResBlock(config.channels(size), config.channels(size // 2)))
            size //= 2
        convs.append(EqualConv2d(config.channels(4), config.latent_dim, 4))  # 4x4 -> 1x1
        self.convs = nn.ModuleList(convs)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        outputs = []
        for conv in self.convs:
            x = conv(x)
            outputs.append(x)
        identity_latent = outputs[-1].flatten(1)
        # Coarse to fine, 8 px up to full size; the 4x4 map and the latent itself are not skip features.
        features = outputs[-3::-1]
        return identity_latent, features


class Encoder(nn.Module):
    def __init__(self, config: MotionAutoEncoderConfig):
        super().__init__()
        self.net_app = EncoderApp(config)
        # Five affine layers with no nonlinearity between them: together one affine map (FLOAT_SPEC §10.7).
        dims = [config.latent_dim] * 5 + [config.motion_dim]
        self.fc = nn.Sequential(*(EqualLinear(a, b) for a, b in zip(dims[:-1], dims[1:])))

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        identity_latent, features = self.net_app(image)
        return identity_latent, self.fc(identity_latent), features


class Direction(nn.Module):
    """The motion basis: an orthonormal set of `motion_dim` directions in latent space."""

    def __init__(self, latent_dim: int, motion_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(latent_dim, motion_dim))

    def basis(self) -> Tensor:
        # Householder QR (LAPACK geqrf/orgqr) fixes the columns' signs; Gram-Schmidt could flip them.
        # Always in float32: QR has no half-precision kernels and the basis is tiny.
        q, _ = torch.linalg.qr(self.weight.float() + 1e-8)
        return q.to(self.weight.dtype)

    def forward(self, coefficients: Tensor) -> Tensor:
        """Motion coefficients (B, motion_dim) -> motion latent (B, latent_dim): sum_k c_k * q_k."""
        return coefficients @ self.basis().T


class ModulatedConv2d(nn.Module):
    """StyleGAN2 convolution whose weight is scaled per sample by a style, then demodulated.

    Two equal forms, chosen per call as StyleGAN2-ADA does:
    - per-sample weights in a grouped convolution (the official form), in float32 or for one sample:
      frame-by-frame decoding then reproduces the official frames bit for bit;
    - modulated activations around one shared convolution, for half-precision batches, where
      per-sample half weights lose precision and one dense convolution suits the GPU.
    The flow warps downstream amplify rounding, so the two agree to about 65 dB PSNR on random weights.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            # conv_transpose2d(stride 2) gives 2H+1; the blur brings it to 2H.
            p = (len(BLUR_TAPS) - 2) - (kernel_size - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        style = self.modulation(style)
        if x.shape[0] == 1 or x.dtype == torch.float32:
            out = self._per_sample_weights(x, style)
        else:
            out = self._modulated_activations(x, style)
        return self.blur(out) if self.upsample else out

    def _per_sample_weights(self, x: Tensor, style: Tensor) -> Tensor:
        batch, in_channels, height, width = x.shape
        weight = self.weight * self.scale * style.view(batch, 1, in_channels, 1, 1)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(batch, -1, 1, 1, 1)
        out_channels, k = weight.shape[1], weight.shape[-1]
        x = x.reshape(1, batch * in_channels, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_channels, out_channels, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            return out.view(batch, out_channels, *out.shape[-2:])
        out = F.conv2d(x, weight.reshape(batch * out_channels, in_channels, k, k), padding=k // 2, groups=batch)
        return out.view(batch, out_channels, height, width)

    def _modulated_activations(self, x: Tensor, style: Tensor) -> Tensor:
        weight = self.weight[0] * self.scale
        x = x * style[:, :, None, None]
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            out = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
        if self.demodulate:
            # 1 / ||W * s|| per sample and output channel, summed in at least float32
            precise = torch.promote_types(weight.dtype, torch.float32)
            norm = torch.einsum("oikl,bi->bo", weight.to(precise).square(), style.to(precise).square())
            out = out * torch.rsqrt(norm + 1e-8).to(out.dtype)[:, :, None, None]
        return out


class StyledConv(nn.Module):
    """ModulatedConv2d + FusedLeakyReLU.

    The released checkpoint also holds a NoiseInjection weight (`noise.weight`) here; no noise is ever
    injected at inference, so that layer is the identity and is left out.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, upsample=upsample)
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.activate(self.conv(x, style))


class ToRGB(nn.Module):
    """Features -> RGB, plus the upsampled RGB of the previous level.

    The 1x1 conv is leaky-ReLU activated (x sqrt(2)) before the bias and skip sums: a quirk of the
    official decoder (FLOAT_SPEC §10.9), kept for parity.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = conv_layer(in_channels, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = Upsample()

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def identity_grid(height: int, width: int, device: torch.device) -> Tensor:
    """(H, W, 2) sampling grid of the unwarped image: [..., 0] is the column (x), [..., 1] the row (y).

    Built with linspace(-1, 1), the align_corners=True convention, while the warp samples with
    align_corners=False: a half-pixel offset of the official code (FLOAT_SPEC §10.8), kept for parity.
    """
    ys = torch.linspace(-1, 1, height, dtype=torch.float64, device=device)
    xs = torch.linspace(-1, 1, width, dtype=torch.float64, device=device)
    rows, cols = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((cols, rows), dim=-1).float()


class ToFlow(nn.Module):
    """Predicts a flow field and an occlusion mask, and warps the encoder's features with them."""

    def __init__(self, in_channels: int, style_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.upsample = Upsample()

    def forward(self, x: Tensor, style: Tensor, feature: Tensor, skip: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (warped features, features blended into the main path, the raw 3-channel output)."""
        flow_out = self.conv(x, style) + self.bias
        if skip is not None:
            flow_out = flow_out + self.upsample(skip)
        mask = torch.sigmoid(flow_out[:, 2:3])
        height, width = x.shape[-2:]
        # The sampling grid stays in float32 whatever the model's dtype: in half precision coordinates
        # in [-1, 1] are off by up to 2 px at 512 px (bfloat16), which visibly smears the warp.
        grid = torch.tanh(flow_out[:, 0:2].float()).permute(0, 2, 3, 1) + identity_grid(height, width, x.device)
        if feature.shape[0] != grid.shape[0]:  # one source image decoded under many motion latents
            feature = feature.expand(grid.shape[0], -1, -1, -1)
        warped = F.grid_sample(feature.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        warped = warped.to(x.dtype) * mask
        return warped, warped + x * (1 - mask), flow_out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class Synthesis(nn.Module):
    """The decoder: renders a latent (identity latent + motion latent) over the warped source features.

    Every modulation uses the same latent, so the official per-layer style indices are irrelevant.
    The image is not squashed: values outside [-1, 1] occur and are clamped only when shown.
    The released checkpoint also holds an unused `to_rgb1`, which is left out.
    """

    def __init__(self, config: MotionAutoEncoderConfig):
        super().__init__()
        dim = config.latent_dim
        self.direction = Direction(dim, config.motion_dim)
        self.input = ConstantInput(config.channels(4))
        self.conv1 = StyledConv(config.channels(4), config.channels(4), 3, dim)
        self.convs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = config.channels(4)
        for level in range(config.num_levels):
            out_channels = config.channels(8 * 2**level)
            self.convs.append(StyledConv(in_channels, out_channels, 3, dim, upsample=True))
            self.convs.append(StyledConv(out_channels, out_channels, 3, dim))
            self.to_flows.append(ToFlow(out_channels, dim))
            self.to_rgbs.append(ToRGB(out_channels))
            in_channels = out_channels

    def forward(self, latent: Tensor, features: list[Tensor]) -> Tensor:
        """latent (B, latent_dim), features coarse to fine (each batch 1 or B) -> image (B, 3, size, size)."""
        out = self.conv1(self.input(latent.shape[0]), latent)
        flow = rgb = None
        for level, feature in enumerate(features):
            out = self.convs[2 * level](out, latent)
            out = self.convs[2 * level + 1](out, latent)
            warped, out, flow = self.to_flows[level](out, latent, feature, skip=flow)
            # ToRGB sees the warped, masked features, not the blended main path.
            rgb = self.to_rgbs[level](warped, skip=rgb)
        return rgb


class EncodedImage(NamedTuple):
    identity_latent: Tensor  # (B, latent_dim): appearance, w_{S->r}
    motion_coefficients: Tensor  # (B, motion_dim): the source's position in the motion basis
    features: list[Tensor]  # the feature pyramid, coarse (8 px) to fine (full size)


class MotionAutoEncoder(nn.Module):
    def __init__(self, config: MotionAutoEncoderConfig):
        super().__init__()
        self.config = config
        self.enc = Encoder(config)
        self.dec = Synthesis(config)

    def encode(self, image: Tensor) -> EncodedImage:
        """image (B, 3, size, size) in [-1, 1]."""
        return EncodedImage(*self.enc(image))

    def decode(self, latent: Tensor, features: list[Tensor]) -> Tensor:
        """latent = identity latent + motion latent (B, latent_dim) -> raw image (B, 3, size, size)."""
        return self.dec(latent, features)
