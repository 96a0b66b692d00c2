"""The sampler: official mode against FLOAT_SPEC §7 re-derived by hand, default mode's solvers, seeds and
determinism, progress and cancellation."""

import math

import pytest
import torch

from float_model.sampling import SamplingProgress, iter_sample_motion, ode_step, sample_motion, time_grid

D, A, E = 64, 32, 7


def conditions(batch: int = 1, frames: int = 65, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, frames, A, generator=g)
    reference = torch.randn(batch, D, generator=g)
    emotion = torch.softmax(torch.randn(batch, E, generator=g), -1)
    return audio, reference, emotion


def official_by_hand(model, audio, reference, emotion, noise, nfe=10, audio_scale=2.0, emotion_scale=1.0):
    """FLOAT_SPEC §7 step by step: 50-frame chunks, 10 context frames, last chunk padded by repetition,
    Euler on linspace(0, 1, nfe): x += (t[k+1] - t[k]) * v(t[k], x)[:, 10:]."""
    batch, frames = audio.shape[:2]
    grid = torch.linspace(0, 1, nfe)
    prev_x, prev_a = torch.zeros(batch, 10, D), torch.zeros(batch, 10, A)
    chunks = []
    for c in range(math.ceil(frames / 50)):
        a = audio[:, 50 * c : 50 * c + 50]
        a = torch.cat([a, a[:, -1:].repeat(1, 50 - a.shape[1], 1)], dim=1)
        x = noise[c]
        for k in range(nfe - 1):
            v = model.vector_field(grid[k], x, a, reference, emotion, prev_x, prev_a, audio_scale, emotion_scale)
            x = x + (grid[k + 1] - grid[k]) * v[:, 10:]
        chunks.append(x)
        prev_x, prev_a = x[:, -10:], a[:, -10:]
    return torch.cat(chunks, dim=1)[:, :frames]


def test_time_grids():
    assert len(time_grid(10, "euler", official=True)) == 10  # nfe points: 9 evaluations
    assert len(time_grid(10, "euler", official=False)) == 11
    assert len(time_grid(10, "midpoint", official=False)) == 6
    assert len(time_grid(8, "rk4", official=False)) == 3
    torch.testing.assert_close(time_grid(10, "euler", official=True), torch.linspace(0, 1, 10))


@pytest.mark.parametrize(
    "nfe,solver,official,message",
    [(5, "midpoint", False, "multiple of 2"), (6, "rk4", False, "multiple of 4"), (0, "euler", False, "positive"),
     (10, "midpoint", True, "Euler only"), (1, "euler", True, "nfe >= 2"), (10, "heun", False, "unknown solver")],
)  # fmt: skip
def test_invalid_solver_settings_are_explained(nfe, solver, official, message):
    with pytest.raises(ValueError, match=message):
        time_grid(nfe, solver, official)


def test_official_mode_is_the_spec_loop(small_model):
    audio, reference, emotion = conditions()
    noise = [torch.randn(1, 50, D) for _ in range(2)]
    with torch.no_grad():
        expected = official_by_hand(small_model, audio, reference, emotion, noise)
    motion = sample_motion(small_model, audio, reference, emotion, official=True, noise=noise)
    assert motion.shape == (1, 65, D)
    torch.testing.assert_close(motion, expected, atol=1e-6, rtol=1e-6)


def test_official_seed_repeats_the_same_noise_in_every_chunk(small_model):
    audio, reference, emotion = conditions()
    fixed = torch.randn(1, 50, D, generator=torch.Generator().manual_seed(15))
    seeded = sample_motion(small_model, audio, reference, emotion, official=True, seed=15)
    explicit = sample_motion(small_model, audio, reference, emotion, official=True, noise=[fixed, fixed])
    torch.testing.assert_close(seeded, explicit)


def test_without_seed_the_global_rng_is_used(small_model):
    audio, reference, emotion = conditions(frames=20)
    torch.manual_seed(3)
    a = sample_motion(small_model, audio, reference, emotion, nfe=2)
    torch.manual_seed(3)
    b = sample_motion(small_model, audio, reference, emotion, nfe=2)
    torch.testing.assert_close(a, b)


def test_default_seed_does_not_depend_on_the_batch(small_model):
    audio, reference, emotion = conditions(batch=2, frames=60)
    both = sample_motion(small_model, audio, reference, emotion, nfe=4, seed=7)
    first = sample_motion(small_model, audio[:1], reference[:1], emotion[:1], nfe=4, seed=7)
    second = sample_motion(small_model, audio[1:], reference[1:], emotion[1:], nfe=4, seed=8)  # item b uses seed + b
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1:], second, atol=1e-5, rtol=1e-5)


def test_default_seed_gives_new_noise_per_chunk(small_model):
    audio, reference, emotion = conditions(frames=100)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    noise = [torch.randn(50, D, generator=g)[None] for _ in range(2)]
    seeded = sample_motion(small_model, audio, reference, emotion, nfe=2, seed=5)
    explicit = sample_motion(small_model, audio, reference, emotion, nfe=2, noise=noise)
    torch.testing.assert_close(seeded, explicit)
    assert not torch.equal(noise[0], noise[1])


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_streamed_chunks_equal_the_whole_sample(small_model, device):
    model = small_model.to(device)
    audio, reference, emotion = conditions(frames=120)
    try:
        chunks = list(iter_sample_motion(model, audio, reference, emotion, nfe=4, seed=1))
        assert [c.shape[1] for c in chunks] == [50, 50, 20]
        whole = sample_motion(model, audio, reference, emotion, nfe=4, seed=1)
        torch.testing.assert_close(torch.cat(chunks, dim=1), whole)
        if device != "cpu":
            cpu = sample_motion(small_model.to("cpu"), audio, reference, emotion, nfe=4, seed=1)
            torch.testing.assert_close(whole.cpu(), cpu, atol=1e-3, rtol=1e-3)
    finally:
        small_model.to("cpu")


@pytest.mark.parametrize("solver,nfe,official,per_chunk", [("euler", 10, False, 10), ("midpoint", 6, False, 6), ("rk4", 8, False, 8), ("euler", 10, True, 9)])
def test_progress_counts_guided_evaluations(small_model, solver, nfe, official, per_chunk):
    audio, reference, emotion = conditions(frames=65)
    seen: list[SamplingProgress] = []
    sample_motion(small_model, audio, reference, emotion, nfe=nfe, solver=solver, official=official, seed=0, callback=seen.append)
    evaluations = [p for p in seen if p.chunk_motion is None]
    assert len(evaluations) == 2 * per_chunk
    assert evaluations[-1].evaluations_done == evaluations[-1].evaluations_total == 2 * per_chunk
    finished = [p for p in seen if p.chunk_motion is not None]
    assert [p.chunk for p in finished] == [0, 1] and finished[1].chunk_motion.shape[1] == 15


def test_a_raising_callback_cancels(small_model):
    audio, reference, emotion = conditions(frames=100)

    class Cancelled(Exception):
        pass

    def cancel(progress):
        if progress.evaluations_done == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        sample_motion(small_model, audio, reference, emotion, nfe=4, seed=0, callback=cancel)


def test_solvers_converge_with_their_order():
    """On dx/dt = -x from x(0) = 1, the error at t = 1 falls with the solver's order."""

    def velocity(t, x):
        return -x

    errors = {}
    for solver, steps in (("euler", 4), ("midpoint", 4), ("rk4", 4)):
        grid = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        x = torch.ones(1, dtype=torch.float64)
        for t0, t1 in zip(grid[:-1], grid[1:]):
            x = ode_step(velocity, solver, t0, t1, x)
        errors[solver] = abs(x.item() - math.exp(-1))
    assert errors["euler"] > 10 * errors["midpoint"] > 10 * errors["rk4"]
    assert errors["rk4"] < 1e-4


def test_constant_per_frame_emotion_equals_clip_emotion(small_model):
    audio, reference, emotion = conditions(frames=70)
    clip = sample_motion(small_model, audio, reference, emotion, nfe=2, seed=0)
    per_frame = sample_motion(small_model, audio, reference, emotion[:, None].expand(-1, 70, -1), nfe=2, seed=0)
    torch.testing.assert_close(per_frame, clip)


def test_bad_inputs_are_explained(small_model):
    audio, reference, emotion = conditions(frames=60)
    with pytest.raises(ValueError, match="reference motion"):
        sample_motion(small_model, audio, reference[:, :10], emotion)
    with pytest.raises(ValueError, match="emotion must be"):
        sample_motion(small_model, audio, reference, emotion[:, None].expand(-1, 30, -1))
    with pytest.raises(ValueError, match="one tensor per chunk"):
        sample_motion(small_model, audio, reference, emotion, noise=[torch.randn(1, 50, D)] * 3)
    with pytest.raises(ValueError, match="no audio frames"):
        sample_motion(small_model, audio[:, :0], reference, emotion)
