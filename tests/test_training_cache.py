"""Prepared clips in, phase-2 cache out: tiny clips written here, cached with the small random model, and
every cached tensor checked against the model's own stages on the same frames and speech."""

import json
import logging
import shutil
import wave

import av
import cv2
import numpy as np
import pytest
import safetensors.torch
import torch

from float_model import load_float_model
from float_model.audio import project_audio
from float_model.pipeline import image_to_model
from float_model.speech import predict_emotion, prepare_audio
from float_model.video import write_video
from training.cache_fmt import CacheIndex, build_cache, main
from training.clips import ClipError, find_clips, read_frames, read_speech

SIZE = 40  # the clips' side; the small model's images are 32 px
RATE = 16000


def moving_square(count: int, size: int = SIZE) -> torch.Tensor:
    """(count, size, size, 3) uint8: a light square crossing a background whose colour changes every frame."""
    frames = torch.zeros(count, size, size, 3, dtype=torch.uint8)
    for i in range(count):
        frames[i] = torch.tensor([(40 + 9 * i) % 256, 90, (200 - 7 * i) % 256], dtype=torch.uint8)
        left = i % (size - 8)
        frames[i, 10:18, left : left + 8] = 230
    return frames


def speech(seconds: float, pitch: float = 220.0) -> torch.Tensor:
    """A mono tone with a slow swell, (N,) at 16 kHz: enough structure for wav2vec2 to react to."""
    t = torch.arange(round(seconds * RATE)) / RATE
    return 0.4 * torch.sin(2 * torch.pi * pitch * t) * (0.6 + 0.4 * torch.sin(2 * torch.pi * 1.5 * t))


def write_wav(path, waveform: torch.Tensor) -> None:
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(RATE)
        file.writeframes((waveform.numpy() * 32767).round().astype("<i2").tobytes())


def read_wav(path) -> torch.Tensor:
    with wave.open(str(path), "rb") as file:
        samples = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    return torch.from_numpy(samples.astype(np.float32) / 32768)


def write_clip(
    folder, name: str, frames: int, *, wav: bool = True, sound_in_video: bool = False, fps: float = 25, size: int = SIZE, seconds: float | None = None
):
    """A prepared clip: <name>.mp4 (and <name>.wav), the speech as long as the video unless `seconds` says otherwise."""
    tone = speech(frames / 25 if seconds is None else seconds, pitch=180 + 20 * len(name))
    audio = {"audio": tone[None], "sample_rate": RATE} if sound_in_video else {}
    write_video(folder / f"{name}.mp4", moving_square(frames, size), fps, **audio)
    if wav:
        write_wav(folder / f"{name}.wav", tone)


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder, "alice", 37)
    write_clip(folder, "bob", 20, size=64)  # larger than the model's images: shrunk
    write_clip(folder, "carol", 26, wav=False, sound_in_video=True)  # speech only inside the mp4
    (folder / "._alice.mp4").write_bytes(b"macOS file metadata, not a clip")
    return folder


@pytest.fixture(scope="module")
def cache_dir(clips_dir, small_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    build_cache(clips_dir, small_model, out, device="cpu", batch=8, progress=False)
    return out


def load_clip(cache_dir, name):
    path = cache_dir / "clips" / f"{name}.safetensors"
    with safetensors.safe_open(str(path), "pt") as file:
        metadata = file.metadata()
    # Read into memory: load_file maps the file, and a test that cuts the file short would change the tensors.
    return safetensors.torch.load(path.read_bytes()), metadata


# ------------------------------------------------------------------------------------------ reading clips


def test_clips_are_found_sorted_with_their_speech(clips_dir):
    clips = find_clips(clips_dir)
    assert [clip.name for clip in clips] == ["alice", "bob", "carol"]
    assert clips[0].video == clips_dir / "alice.mp4" and clips[0].audio == clips_dir / "alice.wav"
    assert clips[2].audio == clips[2].video == clips_dir / "carol.mp4"


@pytest.mark.parametrize("size,interpolation", [(32, cv2.INTER_AREA), (48, cv2.INTER_CUBIC)])
def test_frames_stream_in_batches_resized_area_down_bicubic_up(clips_dir, size, interpolation):
    with av.open(str(clips_dir / "alice.mp4")) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    batches = list(read_frames(clips_dir / "alice.mp4", size, batch=16))
    assert [len(batch) for batch in batches] == [16, 16, 5]
    frames = np.concatenate(batches)
    assert frames.dtype == np.uint8 and frames.shape == (37, size, size, 3)
    expected = np.stack([cv2.resize(frame, (size, size), interpolation=interpolation) for frame in decoded])
    np.testing.assert_array_equal(frames, expected)


def test_frames_at_the_models_size_are_not_resampled(clips_dir):
    with av.open(str(clips_dir / "alice.mp4")) as container:
        decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    np.testing.assert_array_equal(np.concatenate(list(read_frames(clips_dir / "alice.mp4", SIZE, batch=100))), decoded)


def test_speech_comes_from_the_wav_or_else_from_the_video(clips_dir):
    alice, _, carol = find_clips(clips_dir)
    waveform, rate = read_speech(alice)
    assert rate == 16000 and waveform.dtype == torch.float32 and waveform.dim() == 1
    torch.testing.assert_close(waveform, read_wav(clips_dir / "alice.wav"))

    waveform, rate = read_speech(carol)
    original = speech(26 / 25, pitch=180 + 20 * len("carol"))
    assert rate == 16000 and 0 <= waveform.shape[0] - original.shape[0] <= 1024  # AAC pads up to one codec frame
    # AAC is lossy: the decoded tone follows the original closely, not exactly.
    common = min(waveform.shape[0], original.shape[0])
    assert np.corrcoef(waveform[:common].numpy(), original[:common].numpy())[0, 1] > 0.95


def test_clips_not_at_25_fps_are_refused_with_the_rate_found(tmp_path):
    write_clip(tmp_path, "fast", 30, fps=30)
    with pytest.raises(ClipError, match=r"fast\.mp4 runs at 30 fps, but clips must be prepared at 25 fps"):
        next(read_frames(tmp_path / "fast.mp4", 32, 8))


def test_a_clip_without_speech_anywhere_is_explained(tmp_path):
    write_clip(tmp_path, "mute", 10, wav=False)
    (clip,) = find_clips(tmp_path)
    with pytest.raises(ClipError, match=r"clip 'mute' has no speech: there is no mute\.wav .* no audio track"):
        read_speech(clip)


def test_unreadable_non_square_and_missing_clips_are_explained(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ClipError, match=r"cannot read .*broken\.mp4 as a video"):
        next(read_frames(tmp_path / "broken.mp4", 32, 8))
    write_video(tmp_path / "wide.mp4", torch.zeros(5, 40, 64, 3, dtype=torch.uint8), 25)
    with pytest.raises(ClipError, match=r"64x40; clips must be square"):
        next(read_frames(tmp_path / "wide.mp4", 32, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipError, match="no prepared clips"):
        find_clips(tmp_path / "empty")
    with pytest.raises(ClipError, match="does not exist"):
        find_clips(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------ the cache


def test_every_clip_is_cached_with_the_documented_shapes_and_dtypes(cache_dir, small_model):
    config = small_model.config
    for name, frames in (("alice", 37), ("bob", 20), ("carol", 26)):
        tensors, metadata = load_clip(cache_dir, name)
        assert set(tensors) == {"motion", "audio", "emotion"}
        assert tensors["motion"].shape == (frames, config.motion_autoencoder.latent_dim) and tensors["motion"].dtype == torch.float32
        assert tensors["audio"].shape == (frames, config.audio_feature_dim) and tensors["audio"].dtype == torch.float16
        assert tensors["emotion"].shape == (config.fmt.emotion_dim,) and tensors["emotion"].dtype == torch.float32
        assert metadata["fps"] == "25" and metadata["frames"] == str(frames)
        assert metadata["video"].endswith(f"{name}.mp4")


def test_motion_is_the_models_motion_latent_of_every_frame(cache_dir, clips_dir, small_model):
    (frames,) = read_frames(clips_dir / "alice.mp4", 32, batch=100)  # one batch, where the cache used batches of 8
    expected = small_model.motion_latent(small_model.encode_image(image_to_model(frames)).motion_coefficients)
    torch.testing.assert_close(load_clip(cache_dir, "alice")[0]["motion"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["alice", "carol"])
def test_audio_is_the_stacked_wav2vec2_features_and_emotion_the_clip_prediction(cache_dir, clips_dir, small_model, name):
    tensors, metadata = load_clip(cache_dir, name)
    frames = int(metadata["frames"])
    speech_samples, rate = read_speech(next(clip for clip in find_clips(clips_dir) if clip.name == name))
    waveform, _ = prepare_audio(speech_samples[: frames * 640], rate)
    with torch.no_grad():
        stacked = small_model.audio_encoder.stacked_features(waveform, frames, 640)[0]
    torch.testing.assert_close(tensors["audio"], stacked.half())
    # The trainer projects the cached states itself; they must give the model's own audio features.
    torch.testing.assert_close(
        project_audio(small_model.audio_encoder.audio_projection, tensors["audio"].float()[None]), small_model.audio_features(waveform, frames), rtol=1e-2, atol=1e-2
    )
    torch.testing.assert_close(tensors["emotion"], predict_emotion(small_model, waveform)[0])
    assert tensors["emotion"].sum().item() == pytest.approx(1.0, abs=1e-5)


def test_index_lists_the_clips_and_the_models_configuration(cache_dir, small_model):
    data = json.loads((cache_dir / "index.json").read_text())
    assert data["format"] == 1 and data["fps"] == 25
    assert data["clips"] == [
        {"name": "alice", "frames": 37, "file": "clips/alice.safetensors"},
        {"name": "bob", "frames": 20, "file": "clips/bob.safetensors"},
        {"name": "carol", "frames": 26, "file": "clips/carol.safetensors"},
    ]
    index = CacheIndex.load(cache_dir)
    assert [(clip.name, clip.frames, clip.path) for clip in index.clips] == [
        (name, frames, cache_dir / "clips" / f"{name}.safetensors") for name, frames in (("alice", 37), ("bob", 20), ("carol", 26))
    ]
    assert (index.motion_dim, index.audio_feature_dim, index.emotion_dim) == (64, 96, 7)
    assert index.config_json == small_model.config.to_json()


def test_a_second_run_keeps_complete_clips_and_rebuilds_a_cut_short_one(cache_dir, clips_dir, small_model, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(cache_dir, cache)
    files = {name: cache / "clips" / f"{name}.safetensors" for name in ("alice", "bob", "carol")}
    bob = load_clip(cache, "bob")
    with open(files["bob"], "r+b") as file:
        file.truncate(files["bob"].stat().st_size - 100)
    before = {name: path.stat().st_mtime_ns for name, path in files.items()}

    index = build_cache(clips_dir, small_model, cache, progress=False)

    assert files["alice"].stat().st_mtime_ns == before["alice"] and files["carol"].stat().st_mtime_ns == before["carol"]
    rebuilt, metadata = load_clip(cache, "bob")
    assert metadata == bob[1]
    torch.testing.assert_close(rebuilt, bob[0])  # batches of 16 frames now, 8 before: equal up to rounding
    assert [clip.frames for clip in index.clips] == [37, 20, 26]


def test_an_interrupted_write_leaves_no_clip_file_behind(clips_dir, small_model, tmp_path, monkeypatch):
    def interrupted(tensors, filename, metadata=None):
        with open(filename, "wb") as file:
            file.write(b"half a clip")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_cache(clips_dir, small_model, tmp_path, progress=False)
    assert list((tmp_path / "clips").iterdir()) == []
    assert not (tmp_path / "index.json").exists()


def test_a_clip_whose_speech_does_not_match_its_video_is_skipped_by_name(tmp_path, small_model, caplog):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips, "good", 12)
    write_clip(clips, "long_speech", 12, seconds=12 / 25 + 3 * 0.04)  # three frames' worth too long
    write_clip(clips, "nearly", 12, seconds=12 / 25 + 2 * 0.04)  # two frames' worth: still accepted
    with caplog.at_level(logging.WARNING):
        index = build_cache(clips, small_model, tmp_path / "cache", progress=False)
    assert [clip.name for clip in index.clips] == ["good", "nearly"]
    assert "skipping clip 'long_speech'" in caplog.text
    assert not (tmp_path / "cache" / "clips" / "long_speech.safetensors").exists()


def test_command_line_caches_the_first_clips_with_the_emotion_model(clips_dir, small_model_dir, tmp_path, capsys):
    assert main(["--clips", str(clips_dir), "--models", str(small_model_dir), "--out", str(tmp_path), "--device", "cpu", "--limit", "2"]) == 0
    assert [clip.name for clip in CacheIndex.load(tmp_path).clips] == ["alice", "bob"]
    assert "cached 2 clips (57 frames)" in capsys.readouterr().out


def test_the_emotion_model_is_required(clips_dir, small_model_dir, tmp_path):
    without_emotion = load_float_model(small_model_dir, emotion_encoder=False)
    with pytest.raises(ValueError, match="speech-emotion model"):
        build_cache(clips_dir, without_emotion, tmp_path, progress=False)
