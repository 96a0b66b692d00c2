"""The full-size model from a full-size checkpoint in the released layout, through the real loader."""

import os

import pytest
import torch

from float_model import FloatConfig, convert_checkpoint, load_float_model
from float_model.audio import normalize_waveform
from float_model.config import AUDIO_MODEL_NAME, EMOTION_MODEL_NAME
from float_model.synthetic import official_extra_tensors, write_official_layout

# FLOAT_SPEC §9, counted on the official code, minus the 1,557 values of tensors no computation
# reads (to_rgb1: 1,542; 15 NoiseInjection weights), which the loader accepts and drops.
DEAD_WEIGHTS = 1542 + 15
OFFICIAL_COUNTS = {
    "motion_autoencoder": 45_239_560 - DEAD_WEIGHTS,
    "audio_encoder": 99_091_840,
    "emotion_encoder": 316_495_495,
    "fmt": 156_698_112,
}


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory):
    return write_official_layout(tmp_path_factory.mktemp("full"), FloatConfig(), seed=0)


@pytest.fixture(scope="module")
def full_model(full_dir):
    return load_float_model(full_dir)


def link_hf_folders(source, target):
    for name in (AUDIO_MODEL_NAME, EMOTION_MODEL_NAME):
        os.symlink(source / name, target / name)


def test_sizes_are_inferred_as_the_official_ones(full_model):
    assert full_model.config == FloatConfig()
    for name, count in OFFICIAL_COUNTS.items():
        assert sum(p.numel() for p in getattr(full_model, name).parameters()) == count, name
    assert sum(p.numel() for p in full_model.parameters()) == 617_525_007 - DEAD_WEIGHTS


def test_every_stage_once_at_full_size(full_model):
    torch.manual_seed(0)
    encoded = full_model.encode_image(torch.rand(1, 3, 512, 512) * 2 - 1)
    assert encoded.identity_latent.shape == (1, 512) and encoded.motion_coefficients.shape == (1, 20)
    assert [tuple(f.shape[1:]) for f in encoded.features] == [
        (512, 8, 8), (512, 16, 16), (512, 32, 32), (256, 64, 64), (128, 128, 128), (64, 256, 256), (32, 512, 512)
    ]  # fmt: skip
    assert full_model.motion_basis().shape == (512, 20)
    reference = full_model.motion_latent(encoded.motion_coefficients)
    assert reference.shape == (1, 512)

    waveform = normalize_waveform(torch.randn(1, 41280))  # 2.58 s: 65 frames
    audio = full_model.audio_features(waveform, 65)
    assert audio.shape == (1, 65, 512)
    emotion = full_model.emotion(waveform)
    assert emotion.shape == (1, 7)

    with torch.no_grad():
        velocity = full_model.vector_field(
            0.5, torch.randn(1, 50, 512), audio[:, :50], reference, emotion, torch.zeros(1, 10, 512), torch.zeros(1, 10, 512)
        )
    assert velocity.shape == (1, 60, 512) and torch.isfinite(velocity).all()

    frames = full_model.decode(encoded.identity_latent, encoded.features, reference[:, None] + 0.1 * torch.randn(1, 2, 512))
    assert frames.shape == (2, 3, 512, 512) and torch.isfinite(frames).all()


def test_safetensors_and_buffers_variants_load_the_same_weights(full_dir, full_model, tmp_path):
    converted = tmp_path / "converted"
    converted.mkdir()
    convert_checkpoint(full_dir / "float.pth", converted / "float.safetensors")
    link_hf_folders(full_dir, converted)

    with_buffers = tmp_path / "buffers"
    with_buffers.mkdir()
    raw = torch.load(full_dir / "float.pth", weights_only=True, mmap=True)
    raw.update(official_extra_tensors(FloatConfig(), with_buffers=True))
    torch.save(raw, with_buffers / "float.pth")
    del raw
    link_hf_folders(full_dir, with_buffers)

    expected = full_model.state_dict()
    for folder in (converted, with_buffers):
        loaded = load_float_model(folder).state_dict()
        assert loaded.keys() == expected.keys()
        for key in expected:
            assert torch.equal(loaded[key], expected[key]), (folder.name, key)
