"""Audio in (any rate, layout, channels), windowed audio features for long clips, emotion modes."""

import numpy as np
import pytest
import soxr
import torch

from float_model.audio import normalize_waveform
from float_model.speech import (
    emotion_from_label,
    emotion_per_window,
    emotion_schedule,
    encode_audio,
    num_motion_frames,
    predict_emotion,
    prepare_audio,
    to_model_audio,
)


def test_stereo_48k_is_averaged_then_resampled_like_librosa():
    t = torch.arange(48000 * 2) / 48000
    left, right = torch.sin(2 * torch.pi * 220 * t), 0.5 * torch.sin(2 * torch.pi * 330 * t)
    mono = to_model_audio(torch.stack([left, right]), 48000)
    assert mono.shape == (1, 32000) and mono.dtype == torch.float32
    expected = soxr.resample(((left + right) / 2).numpy().astype(np.float32), 48000, 16000, quality="HQ")
    np.testing.assert_allclose(mono[0].numpy(), expected, atol=1e-6)


def test_layouts_and_batches():
    assert to_model_audio(torch.randn(16000), 16000).shape == (1, 16000)
    assert to_model_audio(torch.randn(2, 16000), 16000).shape == (1, 16000)  # (C, N)
    assert to_model_audio(torch.randn(3, 2, 22050), 22050).shape == (3, 16000)  # ComfyUI (B, C, N)


def test_motion_frame_count_is_ceil_of_seconds_times_25():
    assert num_motion_frames(41280) == 65
    assert num_motion_frames(16000) == 25
    assert num_motion_frames(16001) == 26
    assert num_motion_frames(1) == 1


@pytest.mark.parametrize(
    "audio,rate,message",
    [(torch.zeros(0), 16000, "empty"), (torch.zeros(2, 0), 16000, "empty"), (torch.full((100,), float("nan")), 16000, "NaN"),
     (torch.zeros(2, 3, 4, 5), 16000, r"\(B, C, N\)"), (torch.zeros(10), 0, "sample rate")],
)  # fmt: skip
def test_bad_audio_is_explained(audio, rate, message):
    with pytest.raises(ValueError, match=message):
        to_model_audio(audio, rate)


def test_silence_and_a_twentieth_of_a_second_still_animate(small_model):
    for samples in (16000, 800):
        waveform, frames = prepare_audio(torch.zeros(samples), 16000)
        assert torch.isfinite(waveform).all()
        features = encode_audio(small_model, waveform, frames)
        assert features.shape == (1, frames, 32) and torch.isfinite(features).all()


def test_short_clips_are_encoded_in_one_official_pass(small_model):
    waveform = normalize_waveform(torch.randn(1, 16000 * 3))
    one_pass = small_model.audio_features(waveform, 75)
    torch.testing.assert_close(encode_audio(small_model, waveform, 75), one_pass)


def test_long_clips_are_encoded_in_cross_faded_windows(small_model):
    waveform = normalize_waveform(torch.randn(1, 16000 * 5))
    frames = 125
    windowed = encode_audio(small_model, waveform, frames, window_seconds=2.0, overlap_seconds=0.4)
    assert windowed.shape == (1, frames, 32)
    # frames covered by the first window only are exactly that window's features
    first = small_model.audio_features(waveform[:, : 50 * 640], 50)
    torch.testing.assert_close(windowed[:, :40], first[:, :40])
    # in the overlap, a blend of the two windows
    second = small_model.audio_features(waveform[:, 40 * 640 : 90 * 640], 50)
    lo = torch.minimum(first[:, 40:50], second[:, :10]) - 1e-5
    hi = torch.maximum(first[:, 40:50], second[:, :10]) + 1e-5
    assert ((windowed[:, 40:50] >= lo) & (windowed[:, 40:50] <= hi)).all()
    official = encode_audio(small_model, waveform, frames, official=True, window_seconds=2.0)
    torch.testing.assert_close(official, small_model.audio_features(waveform, frames))


def test_clip_emotion_pools_over_windows_for_long_clips(small_model):
    waveform = normalize_waveform(torch.randn(1, 16000 * 3))
    torch.testing.assert_close(predict_emotion(small_model, waveform), small_model.emotion(waveform))
    pooled = predict_emotion(small_model, waveform, window_seconds=1.0)
    classifier = small_model.emotion_encoder.wav2vec2_for_emotion
    with torch.no_grad():
        hidden = torch.cat([classifier.wav2vec2(waveform[:, i : i + 16000]).last_hidden_state for i in range(0, 48000, 16000)], dim=1)
        expected = classifier.classifier(hidden.mean(1)).softmax(-1)
    torch.testing.assert_close(pooled, expected, atol=1e-6, rtol=1e-5)


def test_emotion_per_window_is_held_per_frame(small_model):
    waveform = normalize_waveform(torch.randn(2, 16000 * 5))
    per_frame = emotion_per_window(small_model, waveform, 125)
    assert per_frame.shape == (2, 125, 7)
    torch.testing.assert_close(per_frame[:, 0], per_frame[:, 49])
    torch.testing.assert_close(per_frame[:, 50], small_model.emotion(waveform[:, 32000:64000]))


def test_chosen_emotion_is_a_float_one_hot():
    happy = emotion_from_label("Happy", batch=2)
    assert happy.dtype == torch.float32 and happy.shape == (2, 7)
    assert happy[0].tolist() == [0, 0, 0, 1, 0, 0, 0]
    with pytest.raises(ValueError, match="unknown emotion 'S2E'.*angry"):
        emotion_from_label("S2E")


def test_keyframed_emotion_schedule():
    schedule = emotion_schedule([(1.0, "sad"), (0.0, "happy")], num_frames=50)
    assert schedule.shape == (1, 50, 7)
    assert schedule[0, 0, 3] == 1 and schedule[0, 25, 5] == 1 and schedule[0, 49, 5] == 1
    torch.testing.assert_close(schedule[0, 12, [3, 5]], torch.tensor([0.52, 0.48]))
    torch.testing.assert_close(schedule.sum(-1), torch.ones(1, 50))
    with pytest.raises(ValueError, match="at least one keyframe"):
        emotion_schedule([], 10)
