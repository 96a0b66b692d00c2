"""Audio features and emotion against FLOAT_SPEC §4-§5, re-derived from transformers' submodules."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from float_model.audio import normalize_waveform
from float_model.config import EMOTIONS


def reference_audio_features(model, waveform: torch.Tensor, num_frames: int) -> torch.Tensor:
    """FLOAT_SPEC §4.2 spelled out: replicate-pad, CNN, resample to T, projection, post-LN encoder by
    hand, the layers' outputs side by side (layer-major), audio projection."""
    w2v = model.audio_encoder.wav2vec2
    target = num_frames * 640
    if waveform.shape[-1] < target:
        waveform = torch.cat([waveform, waveform[:, -1:].repeat(1, target - waveform.shape[-1])], dim=-1)
    cnn = w2v.feature_extractor(waveform)
    cnn = F.interpolate(cnn, size=num_frames, mode="linear", align_corners=True).transpose(1, 2)
    h = w2v.feature_projection(cnn)[0]
    encoder = w2v.encoder
    h = encoder.layer_norm(h + encoder.pos_conv_embed(h))
    outputs = []
    for layer in encoder.layers:
        h = layer(h)
        h = h[0] if isinstance(h, tuple) else h
        outputs.append(h)
    stacked = torch.cat(outputs, dim=-1)
    return model.audio_encoder.audio_projection(stacked)


def test_normalisation_is_per_clip_population_variance():
    torch.manual_seed(0)
    x = torch.randn(2, 1000) * 3 + 1
    out = normalize_waveform(x)
    for row, ref in zip(out, x.double().numpy()):
        expected = (ref - ref.mean()) / np.sqrt(ref.var() + 1e-7)
        np.testing.assert_allclose(row.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("num_samples", [41280, 16123, 640 * 20, 900])
def test_audio_features_follow_the_official_path(small_model, num_samples):
    torch.manual_seed(0)
    waveform = normalize_waveform(torch.randn(2, num_samples))
    frames = -(-num_samples * 25 // 16000)  # ceil
    features = small_model.audio_features(waveform, frames)
    assert features.shape == (2, frames, small_model.config.fmt.audio_dim)
    with torch.no_grad():
        expected = reference_audio_features(small_model, waveform, frames)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_audio_encoder_uses_sdpa_attention(small_model):
    assert small_model.audio_encoder.wav2vec2.config._attn_implementation == "sdpa"
    assert small_model.emotion_encoder.wav2vec2_for_emotion.wav2vec2.config._attn_implementation == "sdpa"


def test_audio_features_of_each_batch_item_are_independent(small_model):
    torch.manual_seed(1)
    waveform = normalize_waveform(torch.randn(3, 8000))
    batched = small_model.audio_features(waveform, 13)
    single = small_model.audio_features(waveform[1:2], 13)
    torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=1e-5)


def test_emotion_is_mean_pooled_softmax_over_seven_labels(small_model):
    torch.manual_seed(2)
    waveform = normalize_waveform(torch.randn(2, 12000))
    probabilities = small_model.emotion(waveform)
    assert probabilities.shape == (2, 7)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(2))
    classifier = small_model.emotion_encoder.wav2vec2_for_emotion
    with torch.no_grad():
        pooled = classifier.wav2vec2(waveform).last_hidden_state.mean(1)
        logits = classifier.classifier.out_proj(torch.tanh(classifier.classifier.dense(pooled)))
    torch.testing.assert_close(probabilities, logits.softmax(-1), atol=1e-6, rtol=1e-5)


def test_emotion_labels_are_in_the_official_order(small_model):
    assert EMOTIONS == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert small_model.config.emotion_labels == EMOTIONS


def test_bad_waveforms_get_clear_errors(small_model):
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        small_model.audio_features(torch.randn(16000), 25)
    with pytest.raises(ValueError, match="N > 0"):
        small_model.audio_features(torch.randn(1, 0), 1)
    with pytest.raises(ValueError, match="num_frames"):
        small_model.audio_features(torch.randn(1, 1600), 0)
    with pytest.raises(ValueError, match="25 ms"):
        small_model.emotion(torch.randn(1, 100))


def test_very_short_audio_still_gives_one_frame(small_model):
    features = small_model.audio_features(normalize_waveform(torch.randn(1, 800)), 2)  # 0.05 s
    assert features.shape[1] == 2 and torch.isfinite(features).all()
