"""Video-driven motion: face tracking over a synthetic driving clip, relative motion, blending."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from float_model.crop_box import CropBox
from float_model.driving import blend_motion, smooth_boxes, split_by_frequency, track_face, video_motion
from float_model.face import NoFaceError, YuNetDetector, cut_crop
from float_model.media import load_image

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def sliding_clip(frames: int = 8, step: int = 12, zoom: float = 0.0) -> np.ndarray:
    """The astronaut portrait moving right by `step` px per frame (and growing by `zoom` per frame) on a grey canvas."""
    portrait = load_image(ASSETS / "astronaut.jpg")
    clip = np.full((frames, 640, 760, 3), 128, np.uint8)
    for i in range(frames):
        size = int(512 * (1 + zoom * i))
        clip[i, : min(size, 640), i * step : i * step + size] = cv2.resize(portrait, (size, size))[:640, : 760 - i * step]
    return clip


@pytest.fixture(scope="module")
def detector():
    return YuNetDetector()


def test_crop_boxes_follow_the_shift(detector):
    raw = np.array([b.left for b in track_face(sliding_clip(), detector, smoothing=0)])
    assert abs((raw[-1] - raw[0]) - 7 * 12) <= 6  # the face travelled 84 px
    np.testing.assert_allclose(np.diff(raw), 12, atol=5)  # per-frame detector jitter of a few px
    smoothed = track_face(sliding_clip(), detector, smoothing=1.0)
    assert max(b.size for b in smoothed) - min(b.size for b in smoothed) <= 6


def test_smoothing_fills_frames_without_a_face():
    box = CropBox(10, 20, 100, 640, 480)
    moved = CropBox(30, 20, 100, 640, 480)
    filled = smooth_boxes([box, None, moved], sigma=0)
    assert filled[1].left == 20 and filled[1].size == 100
    steady = smooth_boxes([box, moved] * 10, sigma=3)
    assert max(b.left for b in steady[5:-5]) - min(b.left for b in steady[5:-5]) <= 2
    with pytest.raises(NoFaceError, match="no face found in any driving frame"):
        smooth_boxes([None, None])


def test_video_motion_is_relative_to_the_first_driving_frame(small_model, detector):
    clip = sliding_clip(frames=4, zoom=0.05)
    boxes = track_face(clip, detector)
    reference = torch.randn(1, 64)
    motion = video_motion(small_model, clip, reference, boxes=boxes, batch_size=3)
    assert motion.shape == (1, 4, 64)
    torch.testing.assert_close(motion[:, 0], reference)
    crops = np.stack([cut_crop(clip[i], boxes[i], 32) for i in range(4)])
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    latents = small_model.motion_latent(small_model.encode_image(images).motion_coefficients)
    torch.testing.assert_close(motion[0], reference + latents - latents[:1], atol=1e-5, rtol=1e-5)


def test_a_still_driving_clip_gives_the_portraits_own_motion(small_model):
    still = np.repeat(load_image(ASSETS / "grace_hopper.jpg")[None], 3, axis=0)
    reference = torch.randn(1, 64)
    motion = video_motion(small_model, still, reference)
    torch.testing.assert_close(motion, reference[:, None].expand(-1, 3, -1))


def test_blending_audio_and_video_motion():
    audio, video = torch.randn(1, 6, 16), torch.randn(1, 6, 16)
    torch.testing.assert_close(blend_motion(audio, video, 1.0), audio)
    torch.testing.assert_close(blend_motion(audio, video, 0.0), video)
    per_frame = torch.linspace(0, 1, 6)
    mixed = blend_motion(audio, video, per_frame)
    torch.testing.assert_close(mixed[:, 0], video[:, 0])
    torch.testing.assert_close(mixed[:, -1], audio[:, -1])

    basis = torch.linalg.qr(torch.randn(16, 4))[0]
    mouth_from_audio = blend_motion(audio, video, torch.tensor([1.0, 0.0, 0.0, 0.0]), basis)
    coords = mouth_from_audio @ basis
    torch.testing.assert_close(coords[..., 0], (audio @ basis)[..., 0])
    torch.testing.assert_close(coords[..., 1:], (video @ basis)[..., 1:])
    outside = lambda m: m - (m @ basis) @ basis.T  # noqa: E731
    torch.testing.assert_close(outside(mouth_from_audio), outside(audio))

    with pytest.raises(ValueError, match="resample"):
        blend_motion(audio, video[:, :5], 0.5)
    with pytest.raises(ValueError, match="per-direction weights need the motion basis"):
        blend_motion(audio, video, torch.ones(4))


def test_frequency_split_takes_slow_motion_from_video_and_quick_motion_from_audio():

    t = torch.arange(200, dtype=torch.float64)
    slow, quick = torch.sin(2 * math.pi * t / 100), torch.sin(2 * math.pi * t / 4)  # a 4 s nod, 6 Hz lips at 25 fps
    audio = (0.3 * slow + quick)[None, :, None]  # the audio-driven motion nods a little differently
    video = (slow + 0.2 * quick)[None, :, None]
    mixed = split_by_frequency(audio, video, sigma_frames=3.0)[0, 20:-20, 0]
    wanted = (slow + quick)[20:-20]
    assert (mixed - wanted).abs().max() < 0.05
    with pytest.raises(ValueError, match="differ"):
        split_by_frequency(audio, video[:, :10], 3.0)
