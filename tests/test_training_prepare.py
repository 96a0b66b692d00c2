"""Raw videos in, prepared training clips out: small videos of a moving portrait written here (30 fps, with a
scene cut, a stretch without a face and a stretch too short), cut into 25 fps face crops with their speech and
eye and mouth boxes, read back with training.clips and cached with the small random model."""

import json
import logging
import os
import shutil
import sys
import types
import wave
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from float_model.media import load_image
from float_model.video import write_video
from training.cache_fmt import build_cache
from training.clips import find_clips, read_frames, read_speech
from training.prepare import PreparationError, _load_fan, frames_at_25fps, main, prepare_videos

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SIZE = 64  # the crops' side: small, to be quick
RATE = 44100  # the videos' sound, stereo: resampled to 16 kHz mono
SHOT = 1.6  # seconds of each shot of the talking video


def portrait() -> np.ndarray:
    """Grace Hopper, 256 x 300 (width x height)."""
    return cv2.resize(load_image(ASSETS / "grace_hopper.jpg"), (256, 300), interpolation=cv2.INTER_AREA)


def moved(image: np.ndarray, t: float) -> np.ndarray:
    """The picture as a head moves at time t: turned by up to 4 degrees, shifted by up to 8 px."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height * 0.4), 4 * np.sin(2 * np.pi * t / 1.5), 1.0)
    matrix[:, 2] += (8 * np.sin(2 * np.pi * t / 2), 4 * np.sin(2 * np.pi * t))
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def talking_video(path: Path, sound: bool = True) -> None:
    """4 s at 30 fps: shot A (the portrait, silent) for 1.6 s, a hard cut to shot B (mirrored, red and blue
    swapped, a tone playing) for 1.6 s, 0.4 s of grey without a face, then 0.4 s of shot A again."""
    face = portrait()
    other = np.ascontiguousarray(face[:, ::-1, ::-1])
    frames = []
    for i in range(120):
        t = i / 30
        if t < SHOT:
            frames.append(moved(face, t))
        elif t < 2 * SHOT:
            frames.append(moved(other, t))
        elif t < 2 * SHOT + 0.4:
            frames.append(np.full_like(face, 128))
        else:
            frames.append(moved(face, t))
    time = np.arange(4 * RATE) / RATE
    tone = np.where((time >= SHOT) & (time < 2 * SHOT), 0.5 * np.sin(2 * np.pi * 220 * time), 0.0)
    audio = {"audio": torch.from_numpy(np.stack([tone, tone]).astype(np.float32)), "sample_rate": RATE} if sound else {}
    write_video(path, torch.from_numpy(np.stack(frames)), 30, **audio)


def faceless_video(path: Path) -> None:
    """2 s at 30 fps of a moving colour gradient, with sound."""
    ramp = np.linspace(0, 255, 256, dtype=np.float32)
    frames = [np.stack([np.broadcast_to(np.roll(ramp, 4 * i), (300, 256)), np.full((300, 256), 90), np.full((300, 256), 160)], -1) for i in range(60)]
    write_video(path, torch.from_numpy(np.stack(frames).astype(np.uint8)), 30, torch.zeros(1, 2 * RATE) + 0.1, RATE)


def one_shot_video(path: Path) -> None:
    """1.2 s at 30 fps of the moving portrait, with a tone: one short clip, for the tests of the options."""
    face = portrait()
    time = np.arange(round(1.2 * RATE)) / RATE
    tone = torch.from_numpy((0.5 * np.sin(2 * np.pi * 220 * time)).astype(np.float32))[None]
    write_video(path, torch.from_numpy(np.stack([moved(face, i / 30) for i in range(36)])), 30, tone, RATE)


def prepare(videos, out, **options):
    options = {"size": SIZE, "min_seconds": 1.0, "progress": False, **options}
    return prepare_videos(videos, out, **options)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    talking_video(folder / "talk.mp4")
    faceless_video(folder / "landscape.mp4")
    (folder / "more").mkdir()
    talking_video(folder / "more" / "silent.mp4", sound=False)  # in a subfolder: found too
    (folder / "broken.mov").write_bytes(b"not a video at all")
    return folder


@pytest.fixture(scope="module")
def prepared(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("clips")
    return out, prepare(videos, out)


def by_video(report):
    return {result.video: result for result in report.videos}


def read_wav(path):
    with wave.open(str(path), "rb") as file:
        assert (file.getframerate(), file.getnchannels(), file.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(file.readframes(file.getnframes()), dtype="<i2").astype(np.float32) / 32768


def rms(samples) -> float:
    return float(np.sqrt(np.mean(np.square(samples))))


# ------------------------------------------------------------------------------------------ re-timing


@pytest.mark.parametrize("fps", [24, 30, 50])
def test_frames_are_retimed_to_25fps_by_the_nearest_timestamp(tmp_path, fps):
    # Frame i of the source is grey level 4 i, so each output frame tells which source frame it is.
    frames = torch.stack([torch.full((32, 32, 3), 4 * i, dtype=torch.uint8) for i in range(fps)])
    write_video(tmp_path / "grey.mp4", frames, fps, crf=0)
    times, levels = zip(*((time, frame.mean() / 4) for time, frame in frames_at_25fps(tmp_path / "grey.mp4")))
    count = np.ceil(25 * (fps - 0.5) / fps)  # the instants before the middle of the last frame's span
    assert len(times) == count and all(time == Fraction(k, 25) for k, time in enumerate(times))
    np.testing.assert_allclose(levels, np.floor(np.arange(count) * fps / 25 + 0.5), atol=0.3)


def test_sideways_phone_videos_come_out_upright(tmp_path):
    upright = np.zeros((64, 32, 3), np.uint8)
    upright[:8] = 255  # a white band at the top
    with av.open(str(tmp_path / "phone.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        if not hasattr(stream, "set_display_rotation"):
            pytest.skip("this PyAV cannot write a display rotation")
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        # Stored turned clockwise, with the instruction to turn it back counter-clockwise for display.
        stream.set_display_rotation(90)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(upright, -1)), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    (_, shown), = frames_at_25fps(tmp_path / "phone.mp4")
    assert shown.shape == (64, 32, 3) and shown[:8].mean() > 240 and shown[8:].mean() < 15


# ------------------------------------------------------------------------------------------ the clips


def test_videos_are_cut_at_the_scene_cut_and_where_the_face_is_missing(prepared):
    out, report = prepared
    talk = by_video(report)["talk.mp4"]
    assert talk.status == "prepared" and talk.clips == {"talk_000": 40, "talk_001": 40}
    # 100 frames at 25 fps; the 10 grey ones have no face; the last 10 make a stretch too short to keep.
    assert (talk.frames, talk.frames_with_face, talk.short_stretches) == (100, 90, 1)
    assert talk.cuts >= 2  # A -> B (a cut, though the face barely moves) and grey -> A
    assert [clip.name for clip in find_clips(out)] == ["talk_000", "talk_001"]


def test_clips_are_square_25fps_crops_split_where_the_shot_changes(prepared):
    out, _ = prepared
    first, second = (np.concatenate(list(read_frames(out / f"talk_00{i}.mp4", SIZE, batch=16))) for i in (0, 1))
    assert first.shape == second.shape == (40, SIZE, SIZE, 3)
    # Shot B has red and blue swapped (the face turns blue): no frame of the other shot on either side of the cut.
    redness = lambda frames: frames[..., 0].astype(float).mean((1, 2)) - frames[..., 2].astype(float).mean((1, 2))  # noqa: E731
    assert (redness(first) > 10).all() and (redness(second) < -10).all()


def test_speech_is_16khz_mono_as_long_as_the_frames_and_in_step(prepared):
    out, _ = prepared
    clips = find_clips(out)
    for clip in clips:
        speech, rate = read_speech(clip)
        assert rate == 16000 and speech.dim() == 1
        assert abs(speech.shape[0] - 40 * 640) < 640
        np.testing.assert_allclose(read_wav(clip.audio), speech.numpy(), atol=1e-4)
    silent, loud = (read_wav(out / f"talk_00{i}.wav") for i in (0, 1))
    # The tone plays during shot B only: it must start with clip 1, not spill into clip 0.
    assert rms(silent) < 0.01 and rms(loud[:1600]) > 0.2 and rms(loud) > 0.3


def test_eye_and_mouth_boxes_for_every_frame(prepared):
    out, _ = prepared
    for name in ("talk_000", "talk_001"):
        boxes = json.loads((out / f"{name}.boxes.json").read_text())
        assert (boxes["size"], boxes["fps"], boxes["source"], boxes["video"]) == (SIZE, 25, "yunet5", "talk.mp4")
        assert len(boxes["frames"]) == 40
        for frame in boxes["frames"]:
            for x0, y0, x1, y1 in frame.values():
                assert 0 <= x0 < x1 <= SIZE and 0 <= y0 < y1 <= SIZE
            centre = {part: ((x0 + x1) / 2, (y0 + y1) / 2) for part, (x0, y0, x1, y1) in frame.items()}
            assert centre["left_eye"][0] < centre["right_eye"][0]
            assert max(centre["left_eye"][1], centre["right_eye"][1]) < centre["mouth"][1]
            # The face sits in the middle of FLOAT's crop, eyes about a quarter of the crop's side apart.
            assert 0.15 * SIZE < centre["right_eye"][0] - centre["left_eye"][0] < 0.4 * SIZE
            assert abs((centre["left_eye"][0] + centre["right_eye"][0]) / 2 - SIZE / 2) < 0.15 * SIZE


def test_unusable_videos_are_skipped_with_their_reason(prepared):
    out, report = prepared
    results = by_video(report)
    assert sorted(results) == ["broken.mov", "landscape.mp4", "more/silent.mp4", "talk.mp4"]
    assert (results["landscape.mp4"].status, results["landscape.mp4"].reason) == ("skipped", "no face found in any frame")
    assert (results["more/silent.mp4"].status, results["more/silent.mp4"].reason) == ("skipped", "no audio track")
    assert results["broken.mov"].status == "skipped" and results["broken.mov"].reason.startswith("unreadable")
    saved = json.loads((out / "report.json").read_text())
    assert (saved["clips"], saved["frames"], saved["seconds"]) == (2, 80, 3.2)
    assert saved["videos"] == {"prepared": 1, "already prepared": 0, "skipped": 3, "failed": 0}
    assert {entry["video"]: entry["reason"] for entry in saved["results"]}["landscape.mp4"] == "no face found in any frame"
    assert "no face found in any frame" in report.summary()


def test_a_rerun_skips_what_is_prepared_and_redoes_what_changed(videos, prepared, tmp_path, monkeypatch):
    out = tmp_path / "clips"
    shutil.copytree(prepared[0], out)
    before = {path.name: path.stat().st_mtime_ns for path in out.iterdir() if path.name.startswith("talk")}
    with monkeypatch.context() as patch:
        # Nothing may be prepared again: a video that were would come out "failed".
        patch.setattr("training.prepare.prepare_video", lambda *args: pytest.fail("a video was prepared again"))
        report = prepare(videos, out)
    assert {result.video: result.status for result in report.videos} == {
        "broken.mov": "skipped", "landscape.mp4": "skipped", "more/silent.mp4": "skipped", "talk.mp4": "already prepared"
    }  # fmt: skip
    assert by_video(report)["talk.mp4"].clips == {"talk_000": 40, "talk_001": 40}
    assert by_video(report)["more/silent.mp4"].reason == "no audio track"
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir() if path.name.startswith("talk")} == before

    # A clip file lost: that video is prepared again, the others not.
    (out / "talk_001.boxes.json").unlink()
    report = prepare(videos, out)
    assert {result.video: result.status for result in report.videos}["talk.mp4"] == "prepared"
    assert (out / "talk_001.boxes.json").is_file()
    # Other settings: every video is prepared again, its old clips removed even where it now gives none.
    report = prepare(videos, out, min_seconds=1.7)
    assert by_video(report)["talk.mp4"].status == "skipped" and by_video(report)["talk.mp4"].short_stretches == 3
    assert by_video(report)["talk.mp4"].reason == "too short: no stretch of 1.7 s with a face and speech in every frame and no cut"
    assert not list(out.glob("talk*"))


def test_the_clips_make_a_phase2_cache(prepared, small_model, tmp_path):
    index = build_cache(prepared[0], small_model, tmp_path / "cache", batch=16, progress=False)
    assert [(clip.name, clip.frames) for clip in index.clips] == [("talk_000", 40), ("talk_001", 40)]


# ------------------------------------------------------------------------------------------ options


def test_two_workers_give_the_same_clips(videos, prepared, tmp_path):
    out = tmp_path / "clips"
    report = prepare(videos, out, workers=2)
    assert {r.video: (r.status, r.clips) for r in report.videos} == {r.video: (r.status, r.clips) for r in prepared[1].videos}
    for name in ("talk_000", "talk_001"):
        assert (out / f"{name}.boxes.json").read_text() == (prepared[0] / f"{name}.boxes.json").read_text()


def onnx_conv(weight: np.ndarray, bias: np.ndarray) -> bytes:
    """An ONNX model holding one 1x1 convolution (1, 3, 512, 512) -> (1, classes, 512, 512), serialised by hand
    (protobuf wire format), since the onnx package is not needed otherwise."""

    def varint(value: int) -> bytes:
        out = bytearray()
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                return bytes(out)

    def field(number: int, value) -> bytes:
        if isinstance(value, int):
            return varint(number << 3) + varint(value)
        value = value.encode() if isinstance(value, str) else value
        return varint(number << 3 | 2) + varint(len(value)) + value

    def tensor(name: str, array: np.ndarray) -> bytes:  # TensorProto: dims, FLOAT, name, raw_data
        array = np.ascontiguousarray(array, dtype="<f4")
        return b"".join(field(1, d) for d in array.shape) + field(2, 1) + field(8, name) + field(9, array.tobytes())

    def value_info(name: str, shape) -> bytes:  # ValueInfoProto: name, TypeProto.Tensor(FLOAT, shape)
        dims = b"".join(field(1, field(1, d)) for d in shape)
        return field(1, name) + field(2, field(1, field(1, 1) + field(2, dims)))

    node = field(1, "image") + field(1, "w") + field(1, "b") + field(2, "logits") + field(4, "Conv")
    graph = (
        field(1, node) + field(2, "parsing") + field(5, tensor("w", weight)) + field(5, tensor("b", bias))
        + field(11, value_info("image", [1, 3, 512, 512])) + field(12, value_info("logits", [1, len(bias), 512, 512]))
    )  # fmt: skip
    return field(1, 7) + field(7, graph) + field(8, field(2, 11))  # IR version 7, opset 11


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one_shot")
    one_shot_video(folder / "shot.mp4")
    return folder


def test_face_parsing_writes_mouth_masks(one_shot, tmp_path):
    # A stand-in parser: "upper lip" (class 12) wherever a pixel is redder than it is blue, else class 0. With the
    # ImageNet normalisation undone by the weights and bias, its logit is (red - blue) / 255.
    weight, bias = np.zeros((19, 3, 1, 1)), np.zeros(19)
    weight[12, 0], weight[12, 2], bias[12] = 0.229, -0.225, 0.485 - 0.406
    model = tmp_path / "parsing.onnx"
    model.write_bytes(onnx_conv(weight, bias))
    report = prepare(one_shot, tmp_path / "clips", face_parsing=model)
    assert by_video(report)["shot.mp4"].clips == {"shot_000": 30}
    masks = np.load(tmp_path / "clips" / "shot_000.mouth.npz")["mouth"]
    assert masks.shape == (30, SIZE, SIZE) and masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 1}
    crops = np.concatenate(list(read_frames(tmp_path / "clips" / "shot_000.mp4", SIZE, batch=30))).astype(float)
    # The crops come back through H.264, whose colour is coarser than the masks: compare where colour is clear.
    assert masks[crops[..., 0] > crops[..., 2] + 20].mean() > 0.95
    assert masks[crops[..., 0] + 20 < crops[..., 2]].mean() < 0.05


def test_an_unusable_face_parsing_model_is_a_clear_error(one_shot, tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(PreparationError, match=r"cannot run .*bad\.onnx as a face-parsing model"):
        prepare(one_shot, tmp_path / "clips", face_parsing=tmp_path / "bad.onnx")
    (tmp_path / "five.onnx").write_bytes(onnx_conv(np.zeros((5, 3, 1, 1)), np.zeros(5)))
    with pytest.raises(PreparationError, match=r"gives 5 classes"):
        prepare(one_shot, tmp_path / "clips", face_parsing=tmp_path / "five.onnx")
    with pytest.raises(PreparationError, match=r"does not exist"):
        prepare(one_shot, tmp_path / "clips", face_parsing=tmp_path / "missing.onnx")
    assert not (tmp_path / "clips").exists()


class FakeFaceAlignment:
    """Stands in for face_alignment.FaceAlignment: 68 points at fixed places of the face box given."""

    def __init__(self, kind, device, flip_input):
        assert kind == "2D" and not flip_input

    def get_landmarks_from_image(self, image, detected_faces):
        x1, y1, x2, y2, _ = detected_faces[0]
        centre, side = np.array([x1 + x2, y1 + y2]) / 2, max(x2 - x1, y2 - y1)
        points = np.zeros((68, 2))
        for first, last, offset in [(36, 42, (-0.2, -0.1)), (42, 48, (0.2, -0.1)), (48, 68, (0, 0.3))]:  # eyes, mouth
            points[first:last] = centre + side * np.array(offset)
        return [points]


def test_68_point_landmarks_are_used_when_face_alignment_is_installed(one_shot, tmp_path, monkeypatch):
    fake = types.SimpleNamespace(FaceAlignment=FakeFaceAlignment, LandmarksType=types.SimpleNamespace(TWO_D="2D"))
    monkeypatch.setitem(sys.modules, "face_alignment", fake)
    prepare(one_shot, tmp_path / "clips")
    boxes = json.loads((tmp_path / "clips" / "shot_000.boxes.json").read_text())
    assert boxes["source"] == "fan68" and len(boxes["frames"]) == 30
    for frame in boxes["frames"]:
        (lx0, _, lx1, _), (rx0, _, rx1, _), (mx0, my0, mx1, my1) = frame["left_eye"], frame["right_eye"], frame["mouth"]
        distance = (rx0 + rx1) / 2 - (lx0 + lx1) / 2
        # The crop's side is 1.6 times the box's longer side: eyes 0.4 of that apart are a quarter of the crop apart.
        assert distance == pytest.approx(SIZE * 0.4 / 1.6, rel=0.1)
        assert (lx1 - lx0, mx1 - mx0, my1 - my0) == pytest.approx((0.7 * distance, distance, distance), abs=0.05)


def test_face_alignment_whose_model_cannot_load_falls_back_to_yunet(monkeypatch, caplog):
    def offline(*args, **kwargs):
        raise OSError("could not download the 2DFAN4 weights")

    monkeypatch.setitem(sys.modules, "face_alignment", types.SimpleNamespace(FaceAlignment=offline, LandmarksType=types.SimpleNamespace(TWO_D="2D")))
    with caplog.at_level(logging.WARNING):
        assert _load_fan() is None
    assert "using YuNet's five points" in caplog.text


def test_the_command(one_shot, tmp_path, capsys):
    assert main(["--videos", str(one_shot), "--out", str(tmp_path / "clips"), "--size", "32", "--min-seconds", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"1 clips (0.0 min) in {tmp_path / 'clips'}\nvideos: 1 prepared now (1 clips)")
    assert json.loads((tmp_path / "clips" / "prepared.json").read_text())["videos"]["shot.mp4"]["result"]["clips"] == {"shot_000": 30}
    assert main(["--videos", str(tmp_path / "nowhere"), "--out", str(tmp_path / "clips")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not any(name.startswith(".") for name in os.listdir(tmp_path / "clips"))
