"""The command line as a user runs it: generate on the bundled assets, offline downloads, cancellation."""

import math
from pathlib import Path

import av
import pytest

from float_model import __main__ as cli

ASSETS = Path(__file__).resolve().parent.parent / "assets"
IMAGE, SPEECH = ASSETS / "grace_hopper.jpg", ASSETS / "speech_librivox.wav"


def generate(models: Path, out: Path, *extra: str) -> int:
    return cli.main(["generate", "--image", str(IMAGE), "--audio", str(SPEECH), "--out", str(out), "--models", str(models), "--seed", "0", "--nfe", "2", *extra])


def read_back(path: Path) -> tuple[int, float, int]:
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        rate = float(container.streams.video[0].average_rate)
        audio_rate = container.streams.audio[0].rate
    return frames, rate, audio_rate


@pytest.mark.parametrize("fps", ["25", "30"])
def test_generate_writes_a_playable_mp4_whose_length_matches_the_audio(small_model_dir, tmp_path, fps):
    out = tmp_path / "talk.mp4"
    assert generate(small_model_dir, out, "--fps", fps) == 0
    frames, rate, audio_rate = read_back(out)
    assert frames == math.ceil(47840 / 16000 * float(fps)) and rate == pytest.approx(float(fps), rel=1e-3)
    assert audio_rate == 16000  # the original audio, muxed as it is


def test_chosen_emotion_runs_without_the_emotion_model(small_model_dir, tmp_path):
    assert generate(small_model_dir, tmp_path / "happy.mp4", "--emotion", "happy", "--official") == 0
    assert read_back(tmp_path / "happy.mp4")[0] == 75


def test_missing_models_offline_name_every_file(tmp_path, capsys):
    assert generate(tmp_path / "models", tmp_path / "talk.mp4") == 2
    error = capsys.readouterr().err
    assert "float.pth" in error and "wav2vec2-base-960h/model.safetensors" in error and "huggingface.co" in error
    assert not (tmp_path / "talk.mp4").exists()


def test_bad_settings_are_reported_not_raised(small_model_dir, tmp_path, capsys):
    assert generate(small_model_dir, tmp_path / "talk.mp4", "--solver", "rk4", "--nfe", "6") == 2
    assert "multiple of 4" in capsys.readouterr().err


def test_interrupting_generate_leaves_no_file(small_model_dir, tmp_path, monkeypatch):
    original = cli._print_progress

    def interrupt(stage, done, total):
        original(stage, done, total)
        if stage == "decoding" and done == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_print_progress", interrupt)
    out = tmp_path / "talk.mp4"
    assert generate(small_model_dir, out) == 130
    assert not out.exists() and not list(tmp_path.glob(".*part"))
