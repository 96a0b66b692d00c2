"""The motion auto-encoder against the formulas of FLOAT_SPEC §3, each re-derived independently here."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from float_model.motion_autoencoder import (
    EqualConv2d,
    ToRGB,
    EqualLinear,
    FusedLeakyReLU,
    ModulatedConv2d,
    ResBlock,
    ToFlow,
    blur_kernel,
    identity_grid,
    upfirdn2d,
)


def naive_upfirdn2d(x: np.ndarray, kernel: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """FLOAT_SPEC §3.1 step by step, one channel at a time, with explicit loops."""
    channels, height, width = x.shape
    upsampled = np.zeros((channels, height * up, width * up))
    upsampled[:, ::up, ::up] = x
    p0, p1 = pad
    padded = np.zeros((channels, height * up + max(p0, 0) + max(p1, 0), width * up + max(p0, 0) + max(p1, 0)))
    padded[:, max(p0, 0) : max(p0, 0) + height * up, max(p0, 0) : max(p0, 0) + width * up] = upsampled
    # negative pads crop
    padded = padded[:, max(-p0, 0) : padded.shape[1] - max(-p1, 0), max(-p0, 0) : padded.shape[2] - max(-p1, 0)]
    flipped = kernel[::-1, ::-1]
    kh, kw = kernel.shape
    out = np.zeros((channels, padded.shape[1] - kh + 1, padded.shape[2] - kw + 1))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = (padded[:, i : i + kh, j : j + kw] * flipped).sum(axis=(1, 2))
    return out[:, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (1, 2, (2, 2)), (1, 1, (1, 1)), (2, 1, (-1, 2))])
def test_upfirdn2d_matches_the_four_step_definition(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 7, 7, dtype=torch.float64)
    kernel = torch.randn(4, 4, dtype=torch.float64)  # asymmetric, so a missing flip would show
    expected = naive_upfirdn2d(x[0].numpy(), kernel.numpy(), up, down, pad)
    np.testing.assert_allclose(upfirdn2d(x, kernel, up, down, pad)[0].numpy(), expected, atol=1e-12)


def test_blur_kernel_is_normalised_binomial():
    k = blur_kernel(torch.device("cpu"), torch.float64)
    expected = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64
    np.testing.assert_allclose(k.numpy(), expected)
    assert blur_kernel(torch.device("cpu"), torch.float64, gain=4).sum().item() == pytest.approx(4)


def test_equalized_layers_scale_by_fan_in():
    torch.manual_seed(0)
    linear = EqualLinear(6, 4, bias_init=1.0)
    x = torch.randn(3, 6)
    torch.testing.assert_close(linear(x), x @ linear.weight.T / math.sqrt(6) + 1.0)
    conv = EqualConv2d(5, 2, 3, padding=1)
    x = torch.randn(1, 5, 8, 8)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight / math.sqrt(5 * 9), padding=1))


def test_fused_leaky_relu_adds_bias_then_scales_by_sqrt2():
    act = FusedLeakyReLU(2)
    with torch.no_grad():
        act.bias.copy_(torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))
    x = torch.tensor([1.0, 0.5]).view(1, 2, 1, 1)
    expected = torch.tensor([1.5 * math.sqrt(2), -0.5 * 0.2 * math.sqrt(2)]).view(1, 2, 1, 1)
    torch.testing.assert_close(act(x), expected)


def test_resblock_halves_resolution():
    block = ResBlock(4, 8)
    assert block(torch.randn(2, 4, 16, 16)).shape == (2, 8, 8, 8)


@pytest.mark.parametrize("kernel,demodulate,upsample", [(3, True, False), (3, True, True), (1, False, False)])
def test_modulated_conv_forms_are_equal(kernel, demodulate, upsample):
    """Per-sample weights (the official form, checked bit for bit against official frames) and
    modulated activations are the same operation, up to float64 rounding."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, kernel, style_dim=16, demodulate=demodulate, upsample=upsample).double()
    x, style = torch.randn(3, 6, 8, 8, dtype=torch.float64), torch.randn(3, 16, dtype=torch.float64)
    out = conv(x, style)  # float64 batch: the per-sample-weight form
    assert out.shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)
    activations = conv._modulated_activations(x, conv.modulation(style))
    torch.testing.assert_close(conv.blur(activations) if upsample else activations, out, rtol=1e-10, atol=1e-10)


def test_half_precision_batches_use_modulated_activations():
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, 3, style_dim=16, upsample=True)
    x, style = torch.randn(3, 6, 8, 8), torch.randn(3, 16)
    reference = conv(x, style)
    half = conv.to(torch.bfloat16)(x.bfloat16(), style.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), reference, atol=0.1, rtol=0.05)


def test_to_rgb_activates_before_the_bias_and_the_upsampled_skip():
    rgb = ToRGB(2)
    with torch.no_grad():
        rgb.conv[0].weight.fill_(-1.0)  # conv output -sqrt(2) * ... < 0: the leaky branch
        rgb.bias.fill_(0.25)
    x = torch.ones(1, 2, 4, 4)
    pre = -2 / math.sqrt(2)  # two input channels of 1, weight -1, scale 1/sqrt(2)
    expected = torch.full((1, 3, 4, 4), 0.2 * pre * math.sqrt(2) + 0.25)
    torch.testing.assert_close(rgb(x), expected)
    skip = torch.ones(1, 3, 2, 2)
    upsampled = upfirdn2d(skip, blur_kernel(skip.device, skip.dtype, 4.0), up=2, pad=(2, 1))
    torch.testing.assert_close(rgb(x, skip), expected + upsampled)


def test_identity_grid_uses_align_corners_true_coordinates():
    grid = identity_grid(4, 5, torch.device("cpu"))
    assert grid.shape == (4, 5, 2) and grid.dtype == torch.float32
    np.testing.assert_allclose(grid[0, :, 0].numpy(), np.linspace(-1, 1, 5), atol=1e-7)  # x along columns
    np.testing.assert_allclose(grid[:, 0, 1].numpy(), np.linspace(-1, 1, 4), atol=1e-7)  # y along rows


def test_to_flow_keeps_the_official_half_pixel_offset_and_blends_with_the_mask():
    torch.manual_seed(0)
    flow = ToFlow(4, style_dim=8)
    with torch.no_grad():
        flow.conv.weight.zero_()
        flow.bias.copy_(torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1))  # no offset, mask = sigmoid(1)
    x, feature = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    warped, blended, raw = flow(x, torch.randn(2, 8), feature)
    mask = torch.sigmoid(torch.tensor(1.0))
    base = identity_grid(8, 8, x.device).expand(2, 8, 8, 2)
    expected = F.grid_sample(feature, base, mode="bilinear", padding_mode="zeros", align_corners=False) * mask
    torch.testing.assert_close(warped, expected)
    torch.testing.assert_close(blended, warped + x * (1 - mask))
    assert raw.shape == (2, 3, 8, 8)
    # the quirk: a zero flow does not reproduce the features (align_corners mismatch)
    assert not torch.allclose(warped / mask, feature, atol=1e-3)


def test_encoder_pyramid_is_coarse_to_fine_and_fc_is_affine(small_model):
    config = small_model.config.motion_autoencoder
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    encoded = small_model.encode_image(image)
    assert encoded.identity_latent.shape == (2, config.latent_dim)
    assert encoded.motion_coefficients.shape == (2, config.motion_dim)
    assert [f.shape[-1] for f in encoded.features] == [8 * 2**i for i in range(config.num_levels)]
    assert [f.shape[1] for f in encoded.features] == [config.channels(8 * 2**i) for i in range(config.num_levels)]
    # five stacked affine layers with no activation: an affine map
    fc = small_model.motion_autoencoder.enc.fc
    a, b = torch.randn(1, config.latent_dim), torch.randn(1, config.latent_dim)
    with torch.no_grad():
        torch.testing.assert_close(fc(0.3 * a + 0.7 * b), 0.3 * fc(a) + 0.7 * fc(b), rtol=1e-4, atol=1e-4)


def test_motion_basis_is_householder_qr_of_weight_plus_1e8(small_model):
    direction = small_model.motion_autoencoder.dec.direction
    basis = small_model.motion_basis()
    weight = direction.weight.detach().double().numpy() + 1e-8
    q, _ = np.linalg.qr(weight)  # LAPACK geqrf/orgqr: the same sign convention
    np.testing.assert_allclose(basis.numpy(), q, atol=1e-5)
    torch.testing.assert_close(basis.T @ basis, torch.eye(basis.shape[1]), atol=1e-5, rtol=0)
    coefficients = torch.randn(3, basis.shape[1])
    expected = sum(coefficients[:, k : k + 1] * basis[:, k] for k in range(basis.shape[1]))
    torch.testing.assert_close(small_model.motion_latent(coefficients), expected, atol=1e-5, rtol=1e-5)


def test_decoder_is_unbounded_and_renders_identity_plus_motion(small_model):
    torch.manual_seed(0)
    encoded = small_model.encode_image(torch.rand(1, 3, 32, 32) * 2 - 1)
    motion = torch.randn(1, 3, 64) * 0.1
    frames = small_model.decode(encoded.identity_latent, encoded.features, motion)
    assert frames.shape == (3, 3, 32, 32)
    with torch.no_grad():
        direct = small_model.motion_autoencoder.decode(encoded.identity_latent + motion[0], encoded.features)
    torch.testing.assert_close(frames, direct, atol=1e-4, rtol=1e-3)  # batched vs frame by frame: rounding

    last_rgb = small_model.motion_autoencoder.dec.to_rgbs[-1]
    original = last_rgb.bias.detach().clone()
    try:
        with torch.no_grad():
            last_rgb.bias.fill_(5.0)
        shifted = small_model.decode(encoded.identity_latent, encoded.features, motion)
    finally:
        with torch.no_grad():
            last_rgb.bias.copy_(original)
    assert shifted.max() > 3  # no tanh or clamp on the way out


def test_to_rgb_reads_the_warped_features_not_the_blended_ones(small_model):
    dec = small_model.motion_autoencoder.dec
    warped_outputs, rgb_inputs = [], []
    hooks = [flow.register_forward_hook(lambda m, i, o: warped_outputs.append(o[0])) for flow in dec.to_flows]
    hooks += [rgb.register_forward_pre_hook(lambda m, i: rgb_inputs.append(i[0])) for rgb in dec.to_rgbs]
    try:
        encoded = small_model.encode_image(torch.rand(1, 3, 32, 32) * 2 - 1)
        small_model.decode(encoded.identity_latent, encoded.features, torch.zeros(1, 1, 64))
    finally:
        for hook in hooks:
            hook.remove()
    assert len(rgb_inputs) == len(warped_outputs) == dec.to_rgbs.__len__()
    for warped, rgb_input in zip(warped_outputs, rgb_inputs):
        assert rgb_input is warped


def test_batched_decode_equals_frame_by_frame(small_model):
    torch.manual_seed(1)
    encoded = small_model.encode_image(torch.rand(2, 3, 32, 32) * 2 - 1)
    motion = torch.randn(2, 3, 64) * 0.2
    frames = small_model.decode(encoded.identity_latent, encoded.features, motion, batch_size=4)
    for b in range(2):
        for i in range(3):
            single = small_model.decode(encoded.identity_latent[b : b + 1], [f[b : b + 1] for f in encoded.features], motion[b : b + 1, i : i + 1])
            torch.testing.assert_close(frames[b * 3 + i : b * 3 + i + 1], single, atol=1e-4, rtol=1e-4)


def test_encode_rejects_wrong_image_shapes(small_model):
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        small_model.encode_image(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match="got"):
        small_model.encode_image(torch.rand(3, 32, 32))


def test_half_precision_warps_with_a_float32_grid():
    """At 512 px a half-precision grid is off by a fraction of a pixel, which on detailed features is
    a large error; the grid is built and sampled in float32, so only the output is rounded."""
    torch.manual_seed(0)
    flow = ToFlow(4, style_dim=8)
    with torch.no_grad():
        flow.conv.weight.zero_()
        flow.bias.copy_(torch.tensor([0.25, -0.125, 10.0]).view(1, 3, 1, 1))  # offsets exact in float16, mask ~ 1
    x, feature, style = torch.randn(1, 4, 512, 512), torch.randn(1, 4, 512, 512), torch.randn(1, 8)
    feature = feature.half().float()  # the same features in both precisions
    full = flow(x, style, feature)[0]
    half = flow.half()(x.half(), style.half(), feature.half())[0]
    assert half.dtype == torch.float16
    assert (half.float() - full).abs().max() < 1e-2
