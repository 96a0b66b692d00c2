"""Portrait + speech -> frames through the composed stages."""

import math

import numpy as np
import pytest
import torch

from float_model.pipeline import GenerationSettings, animate, frames_to_images, image_to_model
from float_model.sampling import sample_motion
from float_model.speech import encode_audio, prepare_audio, predict_emotion


def test_images_in_and_out_of_the_model():
    image = np.array([[[0, 255, 51]]], dtype=np.uint8)
    torch.testing.assert_close(image_to_model(image)[0, :, 0, 0], torch.tensor([-1.0, 1.0, -0.6]))
    with pytest.raises(ValueError, match="RGB uint8"):
        image_to_model(np.zeros((10, 10), dtype=np.uint8))
    raw = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    torch.testing.assert_close(frames_to_images(raw)[0, 0, :, 0], torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def run(model, settings, seconds=2.2, images=1, clips=1, rate=22050):
    torch.manual_seed(0)
    image = torch.rand(images, 3, 32, 32) * 2 - 1
    audio = torch.randn(clips, 2, int(seconds * rate)) * 0.1
    frames, count = animate(model, image, audio, rate, settings)
    return image, audio, torch.cat(list(frames)), count


@pytest.mark.parametrize("fps", [25, 30])
def test_frame_count_follows_the_audio_at_any_frame_rate(small_model, fps):
    _, _, frames, count = run(small_model, GenerationSettings(nfe=2, seed=0, fps=fps))
    assert count == math.ceil(round(2.2 * fps, 9)) and frames.shape == (count, 3, 32, 32)


def test_streamed_frames_equal_the_stages_called_one_by_one(small_model):
    settings = GenerationSettings(nfe=2, seed=3)
    image, audio, frames, _ = run(small_model, settings)
    encoded = small_model.encode_image(image)
    waveform, count = prepare_audio(audio, 22050)
    features = encode_audio(small_model, waveform, count)
    emotion = predict_emotion(small_model, waveform)
    motion = sample_motion(small_model, features, small_model.motion_latent(encoded.motion_coefficients), emotion, nfe=2, seed=3)
    torch.testing.assert_close(frames, small_model.decode(encoded.identity_latent, encoded.features, motion))


@pytest.mark.parametrize("emotion", ["predict", "per-window", "happy"])
def test_emotion_modes(small_model, emotion):
    _, _, frames, count = run(small_model, GenerationSettings(nfe=2, seed=0, emotion=emotion))
    assert frames.shape[0] == count and torch.isfinite(frames).all()


def test_one_image_many_clips(small_model):
    _, _, frames, count = run(small_model, GenerationSettings(nfe=2, seed=0), clips=2)
    assert frames.shape[0] == 2 * count


def test_mismatched_batches_and_labels_are_explained(small_model):
    with pytest.raises(ValueError, match="2 images and 3 audio clips"):
        run(small_model, GenerationSettings(nfe=2), images=2, clips=3)
    with pytest.raises(ValueError, match="unknown emotion"):
        run(small_model, GenerationSettings(nfe=2, emotion="grumpy"))


def test_progress_reports_sampling_then_decoding(small_model):
    seen = []
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    frames, count = animate(small_model, image, torch.randn(16000), 16000, GenerationSettings(nfe=2, seed=0), progress=lambda *p: seen.append(p))
    list(frames)
    stages = [stage for stage, _, _ in seen]
    assert stages.index("decoding") > stages.index("sampling")
    assert seen[-1] == ("decoding", count, count)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_every_network(small_model_dir, dtype):
    from float_model import load_float_model

    model = load_float_model(small_model_dir, dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {dtype}
    frames, count = animate(model, torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(16000) * 0.1, 16000, GenerationSettings(nfe=2, seed=0))
    frames = torch.cat(list(frames))
    assert frames.dtype == dtype and frames.shape[0] == count and torch.isfinite(frames).all()


def test_each_stage_runs_where_its_network_is(small_model_dir):
    """The speech networks may live elsewhere than the FMT (offloaded to the CPU, here: another dtype)."""
    from float_model import load_float_model

    model = load_float_model(small_model_dir)
    model.audio_encoder.double()
    model.emotion_encoder.double()
    frames, count = animate(model, torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(16000) * 0.1, 16000, GenerationSettings(nfe=2, seed=0))
    assert torch.cat(list(frames)).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_offload_keeps_the_speech_networks_on_the_cpu(small_model_dir):
    from float_model import load_float_model

    model = load_float_model(small_model_dir, device="cuda")
    image, audio = torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(16000) * 0.1
    kept, _ = animate(model, image, audio, 16000, GenerationSettings(nfe=2, seed=0))
    kept = torch.cat(list(kept))
    offloaded, _ = animate(model, image, audio, 16000, GenerationSettings(nfe=2, seed=0, offload=True))
    torch.testing.assert_close(torch.cat(list(offloaded)), kept)
    assert next(model.audio_encoder.parameters()).device.type == "cpu" and model.fmt.pos_embed.is_cuda


def test_float16_frames_stay_within_40_db_of_float32(small_model_dir):
    """Random flow layers make the decoder chaotic (any rounding change is amplified); a trained
    decoder's flows are gentle, so the flow layers are scaled down to near-identity warps here."""
    from float_model import load_float_model

    def frames(dtype):
        model = load_float_model(small_model_dir, dtype=dtype)
        with torch.no_grad():
            for flow in model.motion_autoencoder.dec.to_flows:
                flow.conv.weight.mul_(0.1)
        encoded = model.encode_image(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1)
        motion = model.motion_latent(encoded.motion_coefficients)[:, None] + 0.1 * torch.randn(1, 4, 64, generator=torch.Generator().manual_seed(1)).to(dtype)
        return model.decode(encoded.identity_latent, encoded.features, motion).float().clamp(-1, 1)

    mse = (frames(torch.float16) - frames(torch.float32)).pow(2).mean().item()
    assert 10 * math.log10(4 / mse) >= 40
