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


def test_paste_back_writes_the_animation_into_the_whole_photo(small_model_dir, tmp_path):
    out = tmp_path / "pasted.mp4"
    assert generate(small_model_dir, out, "--paste-back", "--emotion", "neutral") == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (512, 600)  # the original photo's size
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 75
    # far from the face the picture is the original photo (up to H.264's loss)
    from float_model.media import load_image

    photo = load_image(IMAGE).astype(int)
    assert abs(frames[40][-40:, -40:].astype(int) - photo[-40:, -40:]).mean() < 4


def test_a_picture_without_a_face_is_explained(small_model_dir, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    noise = tmp_path / "noise.png"
    Image.fromarray((np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8)).save(noise)
    code = cli.main(["generate", "--image", str(noise), "--audio", str(SPEECH), "--out", str(tmp_path / "x.mp4"), "--models", str(small_model_dir)])
    assert code == 2 and "no face found" in capsys.readouterr().err
    assert generate_with(small_model_dir, noise, tmp_path / "centre.mp4", "--crop", "face-or-centre") == 0


def generate_with(models: Path, image: Path, out: Path, *extra: str) -> int:
    return cli.main(["generate", "--image", str(image), "--audio", str(SPEECH), "--out", str(out), "--models", str(models), "--nfe", "2", "--emotion", "sad", *extra])


def test_demo_and_convert_commands(small_model_dir, tmp_path, capsys):
    assert cli.main(["demo", "--models", str(small_model_dir), "--seconds", "1"]) == 0
    out = capsys.readouterr().out
    assert "audio features (1 s)" in out and "(1, 25, 32)" in out and "decode 2 frames" in out
    converted = tmp_path / "float.safetensors"
    assert cli.main(["convert", str(small_model_dir / "float.pth"), str(converted)]) == 0
    assert converted.is_file() and "FMT depth 2" in capsys.readouterr().out
    assert cli.main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "x.safetensors")]) == 2


def test_detector_choices_without_their_requirements_are_explained(small_model_dir, tmp_path, capsys, monkeypatch):
    import sys

    assert generate(small_model_dir, tmp_path / "a.mp4", "--detector", "s3fd") == 2
    assert "--s3fd-weights" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # not installed
    assert generate(small_model_dir, tmp_path / "b.mp4", "--detector", "s3fd", "--s3fd-weights", str(tmp_path / "s3fd.pth")) == 2
    assert "pip install face-alignment" in capsys.readouterr().err
