"""The flow-matching transformer against FLOAT_SPEC §6: time embedding, band attention, condition
layout, guidance."""

import math

import pytest
import torch

from float_model.fmt import attention_band, flow_time_embedding, guided_vector_field, sinusoid_table

D, A, E = 64, 32, 7  # small config: motion, audio, emotion widths


def inputs(batch: int = 1, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(
        t=torch.tensor([0.37]),
        x=torch.randn(batch, 50, D, generator=g),
        audio=torch.randn(batch, 50, A, generator=g),
        reference_motion=torch.randn(batch, D, generator=g),
        emotion=torch.softmax(torch.randn(batch, E, generator=g), -1),
        context_motion=torch.randn(batch, 10, D, generator=g) * 0.5,
        context_audio=torch.randn(batch, 10, A, generator=g),
    )


def test_flow_time_embedding_is_cos_then_sin_of_unscaled_t():
    t = torch.tensor([0.0, 0.5, 1.0])
    emb = flow_time_embedding(t, 256)
    assert emb.shape == (3, 256)
    j = torch.arange(128)
    freqs = torch.exp(-math.log(10000) * j / 128)
    torch.testing.assert_close(emb[2, :128], torch.cos(freqs))  # t = 1 is not scaled to 1000
    torch.testing.assert_close(emb[1, 128:], torch.sin(0.5 * freqs))
    torch.testing.assert_close(emb[0], torch.cat([torch.ones(128), torch.zeros(128)]))


def test_attention_band_allows_two_frames_each_side():
    band = attention_band(60, 2)
    assert band.shape == (60, 60) and band.dtype == torch.bool
    for i in (0, 30, 59):
        allowed = band[i].nonzero().flatten().tolist()
        assert allowed == [j for j in range(60) if abs(i - j) <= 2]


def test_sinusoid_table_is_the_classic_position_table():
    table = sinusoid_table(60, 1024)
    assert table.shape == (1, 60, 1024)
    angle = 3 / 10000 ** (4 / 1024)
    assert table[0, 3, 4].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[0, 3, 5].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_output_covers_context_and_chunk_positions(small_model):
    out = small_model.vector_field(**inputs(2), audio_scale=1, emotion_scale=1)
    assert out.shape == (2, 60, D)


def test_receptive_field_is_the_band_times_depth(small_model):
    """Two blocks of +-2 frames: a change at position 0 reaches positions 0..4 and no further."""
    base = inputs()
    changed = dict(base, context_motion=base["context_motion"].clone())
    changed["context_motion"][:, 0] += 1.0
    with torch.no_grad():
        a = small_model.vector_field(**base, audio_scale=1, emotion_scale=1)
        b = small_model.vector_field(**changed, audio_scale=1, emotion_scale=1)
    moved = (a - b).abs().amax(dim=-1)[0]
    assert (moved[:5] > 1e-6).all()
    assert (moved[5:] == 0).all()


def test_condition_columns_are_reference_audio_emotion(small_model):
    fmt = small_model.fmt
    weight = fmt.c_embedder.weight.detach().clone()
    base = inputs()
    try:
        for name, columns in (("reference_motion", slice(0, D)), ("emotion", slice(D + A, D + A + E))):
            with torch.no_grad():
                fmt.c_embedder.weight.copy_(weight)
                fmt.c_embedder.weight[:, columns] = 0
                a = small_model.vector_field(**base, audio_scale=1, emotion_scale=1)
                other = dict(base, **{name: torch.rand_like(base[name])})
                b = small_model.vector_field(**other, audio_scale=1, emotion_scale=1)
            torch.testing.assert_close(a, b, msg=f"zeroed columns {columns} do not hold {name}")
    finally:
        with torch.no_grad():
            fmt.c_embedder.weight.copy_(weight)


def test_guidance_combines_three_branches_and_keeps_context(small_model):
    x = inputs(2)
    fmt = small_model.fmt
    with torch.no_grad():
        full = fmt(**x)
        audio_only = fmt(**dict(x, emotion=torch.zeros_like(x["emotion"])))
        # the unconditional branch still sees the reference and both context streams
        uncond = fmt(**dict(x, audio=torch.zeros_like(x["audio"]), emotion=torch.zeros_like(x["emotion"])))
        guided = small_model.vector_field(**x, audio_scale=2.0, emotion_scale=1.5)
    expected = uncond + 2.0 * (audio_only - uncond) + 1.5 * (full - audio_only)
    torch.testing.assert_close(guided, expected, atol=1e-5, rtol=1e-5)


def test_unit_scales_are_one_plain_forward(small_model):
    x = inputs()
    with torch.no_grad():
        torch.testing.assert_close(small_model.vector_field(**x, audio_scale=1, emotion_scale=1), small_model.fmt(**x))


def test_per_position_emotion_equals_clip_emotion_when_constant(small_model):
    x = inputs()
    per_position = dict(x, emotion=x["emotion"][:, None].expand(-1, 60, -1))
    with torch.no_grad():
        torch.testing.assert_close(small_model.fmt(**per_position), small_model.fmt(**x))


def test_one_hot_int64_emotion_is_accepted(small_model):
    x = inputs()
    one_hot = torch.nn.functional.one_hot(torch.tensor([3]), 7)  # the official chosen-emotion dtype
    with torch.no_grad():
        a = small_model.vector_field(**dict(x, emotion=one_hot))
        b = small_model.vector_field(**dict(x, emotion=one_hot.float()))
    torch.testing.assert_close(a, b)


def test_batch_items_are_independent(small_model):
    x = inputs(3)
    with torch.no_grad():
        batched = guided_vector_field(small_model.fmt, **x)
        single = guided_vector_field(small_model.fmt, **{k: (v if k == "t" else v[1:2]) for k, v in x.items()})
    torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=1e-5)


def test_per_sample_flow_times_for_training(small_model):
    x = inputs(2)
    t = torch.tensor([0.1, 0.9])
    with torch.no_grad():
        both = small_model.fmt(**dict(x, t=t))
        first = small_model.fmt(**{k: (torch.tensor([0.1]) if k == "t" else v[:1]) for k, v in x.items()})
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)


def test_vector_field_carries_gradients_for_training(small_model):
    x = inputs()
    x["x"].requires_grad_(True)
    small_model.vector_field(**x).sum().backward()
    assert x["x"].grad is not None and x["x"].grad.abs().sum() > 0
