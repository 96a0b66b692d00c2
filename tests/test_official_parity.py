"""Parity with the official FLOAT implementation, on outputs it produced.

The reference outputs are not in the repository (the official code's licence forbids redistributing
it, and the dump is 3.5 GB of weights). Point FLOAT_REFERENCE_DUMP at a folder holding:
- `models/`: `float.pth` (and optionally `float_with_buffers.pth`), `wav2vec2-base-960h/`,
  `wav2vec-english-speech-emotion-recognition/`: the weights the official model ran with;
- `reference.pt`: a dict of its inputs and outputs, keys as used below (`image`, `encode.*`,
  `basis.*`, `audio.*`, `emotion.*`, `fmt.caseN.{inputs,out}`, `sample.s2e.trace.*`, `decode.*`).
The thresholds are the acceptance criteria: max abs difference 1e-4 on latents, coefficients, basis,
features, probabilities and vector fields; decoded frames within PSNR 55 dB over [-1, 1].
"""

import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from float_model import load_float_model

DUMP = os.environ.get("FLOAT_REFERENCE_DUMP")
pytestmark = pytest.mark.skipif(not DUMP, reason="set FLOAT_REFERENCE_DUMP to an official reference dump to run parity tests")
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    return torch.load(Path(DUMP) / "reference.pt", weights_only=True)


@pytest.fixture(scope="module")
def model():
    return load_float_model(Path(DUMP) / "models" / "float.pth")


def max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def psnr(a, b) -> float:
    mse = (a.double() - b.double()).pow(2).mean().item()
    return 10 * math.log10(4.0 / mse) if mse > 0 else math.inf


def test_buffers_in_the_file_change_nothing(tmp_path, model):
    source = Path(DUMP) / "models"
    if not (source / "float_with_buffers.pth").exists():
        pytest.skip("no float_with_buffers.pth in the dump")
    (tmp_path / "float.pth").symlink_to(source / "float_with_buffers.pth")
    for name in ("wav2vec2-base-960h", "wav2vec-english-speech-emotion-recognition"):
        (tmp_path / name).symlink_to(source / name)
    other = load_float_model(tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_encode(model, reference):
    encoded = model.encode_image(reference["image"])
    assert max_diff(encoded.identity_latent, reference["encode.s_r"]) <= TOLERANCE
    assert max_diff(encoded.motion_coefficients, reference["encode.r_s_lambda"]) <= TOLERANCE
    for ours, theirs in zip(encoded.features, reference["encode.feats"], strict=True):
        assert ours.shape == theirs.shape
        assert max_diff(ours, theirs) <= TOLERANCE


def test_motion_basis(model, reference):
    assert max_diff(model.motion_basis(), reference["basis.Q"]) <= TOLERANCE
    assert max_diff(model.motion_latent(reference["encode.r_s_lambda"]), reference["basis.r_s"]) <= TOLERANCE


@pytest.mark.parametrize("clip", ["audio", "audio2"])
def test_audio_features(model, reference, clip):
    features = model.audio_features(reference[f"{clip}.a"], reference[f"{clip}.T"])
    assert max_diff(features, reference[f"{clip}.wa"]) <= TOLERANCE


@pytest.mark.parametrize("clip", ["emotion", "emotion2"])
def test_emotion(model, reference, clip):
    audio = reference["audio.a" if clip == "emotion" else "audio2.a"]
    assert max_diff(model.emotion(audio), reference[f"{clip}.probs"]) <= TOLERANCE


def official_call(model, inputs):
    return model.vector_field(
        inputs["t"], inputs["x"], inputs["wa"], inputs["wr"], inputs["we"], inputs["prev_x"], inputs["prev_wa"],
        audio_scale=inputs["a_cfg_scale"], emotion_scale=inputs["e_cfg_scale"],
    )  # fmt: skip


@pytest.mark.parametrize("case", range(6))
def test_vector_field(model, reference, case):
    key = f"fmt.case{case}"
    if f"{key}.out" not in reference:
        pytest.skip(f"no {key} in the dump")
    with torch.no_grad():
        out = official_call(model, reference[f"{key}.inputs"])
    assert max_diff(out, reference[f"{key}.out"]) <= TOLERANCE


def test_vector_field_along_the_official_sampling_trace(model, reference):
    """Every velocity call of a two-chunk official sample, with its real chunk inputs."""
    trace = {k.removeprefix("sample.s2e.trace."): v for k, v in reference.items() if k.startswith("sample.s2e.trace.")}
    emotion = reference["sample.s2e.we"][1]  # the conditional row of the CFG batch
    with torch.no_grad():
        for i in range(trace["t"].shape[0]):
            out = model.vector_field(
                trace["t"][i : i + 1], trace["x"][i], trace["wa"][i], reference["basis.r_s"][:1], emotion,
                trace["prev_x"][i], trace["prev_wa"][i], audio_scale=2.0, emotion_scale=1.0,
            )  # fmt: skip
            assert max_diff(out, trace["v"][i]) <= TOLERANCE, f"call {i}"


@pytest.mark.parametrize("batch_size", [1, 3])
def test_decode(model, reference, batch_size):
    encoded_features = [f[:1] for f in reference["encode.feats"]]
    motion = reference["decode.latents"] - reference["encode.s_r"][:1]
    frames = model.decode(reference["encode.s_r"][:1], encoded_features, motion[None], batch_size=batch_size)
    assert frames.shape == reference["decode.frames"].shape
    assert psnr(frames, reference["decode.frames"]) >= 55


@pytest.mark.parametrize("emotion_source", ["s2e", "happy"])
@pytest.mark.parametrize("noise_source", ["explicit", "seed"])
def test_official_sampler(model, reference, emotion_source, noise_source):
    """A 65-frame, two-chunk clip, with predicted and with chosen emotion (FLOAT_SPEC §7)."""
    from float_model.sampling import sample_motion
    from float_model.speech import emotion_from_label

    emotion = reference["emotion.probs"] if emotion_source == "s2e" else emotion_from_label("happy")
    noise = {"noise": [reference["sample.noise"]] * 2} if noise_source == "explicit" else {"seed": 15}
    motion = sample_motion(model, reference["audio.wa"], reference["basis.r_s"][:1], emotion, official=True, **noise)
    assert max_diff(motion, reference[f"sample.{emotion_source}.r_d"]) <= TOLERANCE
