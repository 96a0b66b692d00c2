"""Motion tools: frame-rate conversion, basis edits, damping, smoothing, files."""

import math

import pytest
import torch

from float_model.motion import basis_coefficients, damp_motion, edit_motion, load_motion, resample_motion, save_motion, smooth_motion


@pytest.mark.parametrize("fps", [24, 25, 29.97, 30, 50, 60])
def test_resampled_frame_count_matches_the_audio(fps):
    seconds = 41280 / 16000  # 2.58 s: 65 frames at 25 fps
    motion = torch.randn(2, 65, 8)
    out = resample_motion(motion, seconds, fps)
    assert out.shape == (2, math.ceil(seconds * fps), 8)


def test_resampling_keeps_frames_that_fall_on_source_frames():
    motion = torch.randn(1, 65, 8)
    torch.testing.assert_close(resample_motion(motion, 2.58, 25), motion)
    doubled = resample_motion(motion, 2.58, 50)
    torch.testing.assert_close(doubled[:, ::2], motion)
    torch.testing.assert_close(doubled[:, 1], (motion[:, 0] + motion[:, 1]) / 2)
    with pytest.raises(ValueError, match="fps"):
        resample_motion(motion, 2.58, 0)


def orthonormal_basis(dim=16, k=4):
    return torch.linalg.qr(torch.randn(dim, k))[0]


def test_no_edit_is_the_identity_and_edits_touch_only_chosen_directions():
    basis = orthonormal_basis()
    motion = torch.randn(1, 10, 16)
    torch.testing.assert_close(edit_motion(motion, basis), motion)
    torch.testing.assert_close(edit_motion(motion, basis, torch.ones(4), torch.zeros(4)), motion)
    offset = torch.tensor([0.0, 0.5, 0.0, 0.0])
    scale = torch.tensor([1.0, 1.0, 2.0, 1.0])
    edited = edit_motion(motion, basis, scale, offset)
    before, after = basis_coefficients(motion, basis), basis_coefficients(edited, basis)
    torch.testing.assert_close(after[..., 1], before[..., 1] + 0.5)
    torch.testing.assert_close(after[..., 2], before[..., 2] * 2)
    torch.testing.assert_close(after[..., [0, 3]], before[..., [0, 3]])
    outside = lambda m: m - basis_coefficients(m, basis) @ basis.T  # noqa: E731
    torch.testing.assert_close(outside(edited), outside(motion))


def test_damping_scales_the_deviation_from_the_reference():
    motion, reference = torch.randn(2, 5, 8), torch.randn(2, 8)
    torch.testing.assert_close(damp_motion(motion, reference, 1.0), motion)
    torch.testing.assert_close(damp_motion(motion, reference, 0.0), reference[:, None].expand(-1, 5, -1))
    torch.testing.assert_close(damp_motion(motion, reference, 0.5) - reference[:, None], (motion - reference[:, None]) / 2)


def test_smoothing():
    motion = torch.randn(1, 100, 4)
    torch.testing.assert_close(smooth_motion(motion, 0), motion)
    constant = torch.ones(1, 30, 4) * 3
    torch.testing.assert_close(smooth_motion(constant, 2.0), constant)
    smoothed = smooth_motion(motion, 2.0)
    assert smoothed.shape == motion.shape
    assert smoothed.diff(dim=1).std() < motion.diff(dim=1).std() / 3


def test_motion_files_round_trip(tmp_path):
    motion = torch.randn(1, 65, 8)
    save_motion(tmp_path / "m.safetensors", motion, 29.97, model_config_json='{"x": 1}')
    loaded, fps = load_motion(tmp_path / "m.safetensors", latent_dim=8)
    torch.testing.assert_close(loaded, motion)
    assert fps == 29.97
    with pytest.raises(ValueError, match="width 8"):
        load_motion(tmp_path / "m.safetensors", latent_dim=512)
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable motion file"):
        load_motion(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="not found"):
        load_motion(tmp_path / "missing.safetensors")
