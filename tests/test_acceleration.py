"""torch.compile of the FMT and the decoder: same numbers when it works, eager fallback when it cannot."""

import logging

import pytest
import torch

from float_model import load_float_model
from float_model.acceleration import CompiledOrEager, compile_model
from float_model.pipeline import GenerationSettings, animate


def run(model, **settings):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    audio = torch.randn(16000, generator=torch.Generator().manual_seed(1)) * 0.1
    frames, _ = animate(model, image, audio, 16000, GenerationSettings(nfe=2, seed=0, **settings))
    return torch.cat(list(frames))


def test_compiled_model_gives_the_eager_numbers(small_model_dir):
    eager = run(load_float_model(small_model_dir))
    model = load_float_model(small_model_dir)
    compiled = run(model, compile=True)
    assert isinstance(model.fmt.forward, CompiledOrEager)
    if model.fmt.forward.compiled is None:
        pytest.skip("torch.compile is unavailable here (it fell back to eager)")
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    assert set(model.state_dict()) == set(load_float_model(small_model_dir).state_dict())


def test_a_failing_compiler_falls_back_to_eager_with_one_warning(small_model_dir, monkeypatch, caplog):
    def broken_compile(fn, **options):
        def fails(*args, **kwargs):
            raise RuntimeError("no C++ compiler found")

        return fails

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = compile_model(load_float_model(small_model_dir))
    assert compile_model(model) is model  # idempotent
    with caplog.at_level(logging.WARNING):
        frames = run(model)
    torch.testing.assert_close(frames, run(load_float_model(small_model_dir)))
    warnings = [r for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(warnings) == 2 and "no C++ compiler found" in warnings[0].getMessage()  # one per network
