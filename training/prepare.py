"""Preparing training clips from raw talking-head videos: face crops at 25 fps, 16 kHz speech, eye and mouth boxes.

    python -m training.prepare --videos DIR --out CLIPS_DIR [--size 512] [--workers N] [--min-seconds 2.4]
                               [--margin 1.6] [--face-parsing MODEL.onnx]

Every video under DIR (searched recursively; .mp4 .mov .mkv .webm, hidden files skipped, and CLIPS_DIR skipped
if it lies inside DIR) is turned into clips in the PREPARED CLIP format that `training.clips` reads:

    <name>.mp4         square face crops, `size` px, exactly 25 fps, H.264 (crf 18) with the speech as AAC
    <name>.wav         the clip's speech, 16 kHz mono 16-bit PCM, 640 samples per frame
    <name>.boxes.json  eye and mouth boxes of every frame in the crop's pixels, for the phase-1 component losses:
                       {"size": S, "fps": 25, "source": "yunet5" | "fan68", "video": "<input, relative to DIR>",
                        "start": <seconds into the input>,
                        "frames": [{"left_eye": [x0, y0, x1, y1], "right_eye": [...], "mouth": [...]}, ...]}
    <name>.mouth.npz   only with --face-parsing: "mouth", (T, S, S) uint8, 1 where the face-parsing model sees
                       the mouth or lips (classes 11, 12, 13), else 0

Clips are named `<video path relative to DIR, without suffix, "/" replaced by "_">_<index:03d>`, which for a flat
folder is `<video stem>_000`, `<video stem>_001`, ... "left_eye" is the eye on the image's left (the subject's right
eye: 68-point landmarks 36-41, YuNet's first point), as in GFPGAN's component boxes.

How a video becomes clips:
1. Frames are decoded with PyAV, turned upright by their rotation metadata, and re-timed to 25 fps by taking, for
   every instant k/25 s after the first frame, the frame nearest to it. The audio is decoded with
   float_model's `load_audio` and brought to 16 kHz mono with soxr (`to_model_audio`), as at inference; frame k
   is paired with the samples [640 k, 640 (k + 1)) counted from the frame's own timestamp.
2. Each frame's largest face is found by the bundled YuNet detector, and its crop square placed exactly as at
   inference (float_model.face.crop_box, margin 1.6).
3. The frames are split into stretches at every frame without a face or without speech, at scene cuts, and where
   the face jumps. A scene cut is where the mean absolute difference of consecutive frames, shrunk to 64 x 64,
   exceeds SCENE_CUT_LEVELS = 30 of 255 levels (a moving head, as in the bundled driving_head_motion.mp4,
   changes by 4 to 10; PySceneDetect's content detector cuts at a similar 27 on its HSV difference). The face
   jumps where its crop's centre moves by more than FACE_JUMP_SHIFT = 0.3 of the crop's side, or the side
   changes by a factor of more than FACE_JUMP_SCALE = 1.4, from one frame to the next: another person, or a cut
   between two similar shots. Stretches shorter than `min_seconds` (2.4 s, one 60-frame phase-2 window) are dropped.
4. Within each stretch the crop squares are smoothed over time (float_model.driving.smooth_boxes, sigma 2
   frames), so the crop follows the head without jitter, and cut with float_model.face.cut_crop.
5. Eye and mouth boxes come from landmarks: face-alignment's 68 points when that package is installed and its
   model loads, else the five points YuNet finds with the face. Each box is a square centred on the eye (or on
   the mouth: the middle of its corners, or the mean of the 20 mouth points), its side EYE_BOX_SIDE = 0.7 or
   MOUTH_BOX_SIDE = 1.0 times the distance between the eyes, clipped to the crop. In FLOAT's crop the eyes are
   about a quarter of the crop's side apart, so at 512 px the boxes are about 85 and 125 px: the eye with its
   lids, and the lips open or closed. GFPGAN's boxes from 68 points are a little tighter (about 0.6 and 0.85
   times the eye distance); five points place the centres less exactly, hence the margin.

Every file appears under its name only once complete (written under a hidden temporary name, then renamed), and
the .mp4 is written last, so a clip that `find_clips` sees is whole. What was done with each video is recorded in
CLIPS_DIR/prepared.json (its size and modification time, the settings, the clips written or why it was skipped);
a rerun skips the videos recorded there with the same file, the same settings and all their clips present, and
prepares again (after removing its old clips) any other. One run per CLIPS_DIR at a time. With `workers` > 1 the
videos are prepared in parallel processes, one video each. At the end a report of what was written and what was
skipped and why is saved as CLIPS_DIR/report.json (and printed by the command).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import wave
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from float_model.crop_box import CropBox
from float_model.driving import smooth_boxes
from float_model.face import MARGIN, FaceBox, YuNetDetector, crop_box, cut_crop, select_face
from float_model.media import MediaError, PathLike, load_audio
from float_model.speech import SAMPLE_RATE, to_model_audio
from float_model.video import write_video

from .clips import FPS
from .files import write_atomically

try:
    from tqdm import tqdm
except ImportError:  # a log line per video instead of a progress bar
    tqdm = None

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
STATE_NAME = "prepared.json"
REPORT_NAME = "report.json"
UNMASKED_SUFFIX = ".unmasked.mp4"  # a clip's video waiting for its masks, under a hidden name
# Bumped when the output changes, so that clips prepared by an older version are prepared again.
FORMAT_VERSION = 1
CRF = 18

# Scene cuts: mean absolute difference of consecutive frames shrunk to THUMBNAIL x THUMBNAIL, in 0-255 levels.
THUMBNAIL = 64
SCENE_CUT_LEVELS = 30.0
# Face jumps between consecutive frames: centre shift as a fraction of the crop's side, and change of the side.
FACE_JUMP_SHIFT = 0.3
FACE_JUMP_SCALE = 1.4
BOX_SMOOTHING = 2.0  # sigma in frames, as float_model.driving.track_face
# Component boxes: square sides as multiples of the distance between the eye centres.
EYE_BOX_SIDE = 0.7
MOUTH_BOX_SIDE = 1.0

# Face parsing (BiSeNet trained on CelebAMask-HQ): 512 x 512 RGB in, ImageNet normalisation, 19 classes out.
PARSING_SIZE = 512
PARSING_CLASSES = 19
MOUTH_CLASSES = (11, 12, 13)  # inner mouth, upper lip, lower lip
PARSING_MEAN = (0.485, 0.456, 0.406)
PARSING_STD = (0.229, 0.224, 0.225)


class PreparationError(ValueError):
    """The preparation cannot start (bad settings, an unusable face-parsing model); the message says why."""


class SkipVideo(Exception):
    """This video gives no clips; the message is the reason recorded in the report."""


@dataclass(frozen=True)
class Settings:
    """What decides a video's clips; a video prepared with other settings is prepared again."""

    size: int
    min_seconds: float
    margin: float
    face_parsing: str | None

    @property
    def min_frames(self) -> int:
        # The small tolerance keeps 2.4 s at 60 frames despite 2.4 * 25 = 60.00000000000001.
        return max(1, math.ceil(self.min_seconds * FPS - 1e-6))


@dataclass
class VideoResult:
    """What became of one input video: its clips (name -> frames), or the reason it gave none.

    status: "prepared" (now), "already prepared" (by an earlier run), "skipped" (the video gives no clips:
    see `reason`) or "failed" (an unexpected error, in `reason`; tried again on the next run).
    The counts are of 25 fps frames: all of them, those with a face, and the cuts (scene cuts and face
    jumps) and the stretches dropped as shorter than the minimum.
    """

    video: str
    status: str
    clips: dict[str, int] = field(default_factory=dict)
    reason: str | None = None
    frames: int = 0
    frames_with_face: int = 0
    cuts: int = 0
    short_stretches: int = 0


@dataclass
class PreparationReport:
    """Every input video's result, in the order of their paths."""

    out_dir: Path
    videos: list[VideoResult]

    @property
    def clips(self) -> dict[str, int]:
        """All clips now in the folder (written now or earlier): name -> frames."""
        return {name: frames for video in self.videos for name, frames in video.clips.items()}

    def count(self, status: str) -> int:
        return sum(video.status == status for video in self.videos)

    def to_dict(self) -> dict:
        return {
            "clips": len(self.clips),
            "frames": sum(self.clips.values()),
            "seconds": sum(self.clips.values()) / FPS,
            "videos": {status: self.count(status) for status in ("prepared", "already prepared", "skipped", "failed")},
            "results": [asdict(video) for video in self.videos],
        }

    def summary(self) -> str:
        """A few lines for people: totals, then every skipped or failed video with its reason."""
        written = sum(len(video.clips) for video in self.videos if video.status == "prepared")
        lines = [
            f"{len(self.clips)} clips ({sum(self.clips.values()) / FPS / 60:.1f} min) in {self.out_dir}",
            f"videos: {self.count('prepared')} prepared now ({written} clips), {self.count('already prepared')} prepared earlier, "
            f"{self.count('skipped')} skipped, {self.count('failed')} failed",
        ]
        lines += [f"  {video.status}: {video.video}: {video.reason}" for video in self.videos if video.reason]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ decoding


def _nominal_period(stream: av.video.stream.VideoStream) -> Fraction:
    """Seconds per frame by the stream's declared rate (25 fps if it declares none)."""
    return 1 / Fraction(stream.average_rate or stream.guessed_rate or FPS)


def _frame_times(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[tuple[Fraction, av.VideoFrame]]:
    """Decoded frames with their presentation times in seconds, exact fractions, strictly increasing.

    A frame without a timestamp is placed one frame period after the previous one; a frame not later
    than the previous one (broken timestamps) is left out, since there is no right place for it.
    """
    previous: Fraction | None = None
    for frame in container.decode(stream):
        if frame.pts is not None and frame.time_base is not None:
            time = frame.pts * Fraction(frame.time_base)
        else:
            time = Fraction(0) if previous is None else previous + _nominal_period(stream)
        if previous is not None and time <= previous:
            continue
        previous = time
        yield time, frame


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """RGB array of a frame, turned as a player shows it (phones store portrait videos sideways)."""
    image = frame.to_ndarray(format="rgb24")
    # The display rotation, counter-clockwise degrees; older PyAV versions do not read it.
    quarter_turns = round(getattr(frame, "rotation", 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def frames_at_25fps(path: PathLike) -> Iterator[tuple[Fraction, np.ndarray]]:
    """(time in seconds, upright RGB frame) for every instant first + k/25 s of a video's first video stream.

    Each instant gets the decoded frame nearest to it (on a tie, the later one), so 30 fps drops every
    sixth frame and 24 fps repeats every 24th; the last frame lasts as long as the one before it. This is
    re-timing, not interpolation: every frame is a real one, and its time stays within half a source
    frame of the instant it stands for, which keeps it in step with the speech.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-parallel decoding
        step = Fraction(1, FPS)
        instant = previous_time = previous_frame = None
        last_period = _nominal_period(stream)
        for time, frame in _frame_times(container, stream):
            if previous_frame is None:
                instant = time
            else:
                # The instants before the midpoint are nearer the previous frame than this one.
                while instant < (previous_time + time) / 2:
                    yield instant, _upright(previous_frame)
                    instant += step
                last_period = time - previous_time
            previous_time, previous_frame = time, frame
        if previous_frame is not None:
            while instant < previous_time + last_period / 2:
                yield instant, _upright(previous_frame)
                instant += step


def _speech(path: Path) -> tuple[np.ndarray, Fraction]:
    """The default audio track as 16 kHz mono float32 samples, and the time of its first sample in seconds.

    The time is the first decoded frame's, not the stream's declared start, which for AAC can include the
    encoder's priming samples that the decoder drops.
    """
    waveform, sample_rate = load_audio(path)
    with av.open(str(path)) as container:
        first = next(container.decode(container.streams.best("audio")), None)
    start = first.pts * Fraction(first.time_base) if first is not None and first.pts is not None else Fraction(0)
    return to_model_audio(waveform, sample_rate)[0].numpy(), start


# ------------------------------------------------------------------------------------------ faces and landmarks


def _yunet_anchors(points: np.ndarray) -> np.ndarray:
    """Five YuNet points -> (3, 2): left eye, right eye, middle of the mouth corners."""
    return np.stack([points[0], points[1], (points[3] + points[4]) / 2])


class FanLandmarks:
    """face-alignment's 2D-FAN 68 points of a face given its box, reduced to the eye and mouth centres."""

    source = "fan68"

    def __init__(self, device: str):
        import face_alignment

        kinds = face_alignment.LandmarksType
        kind = getattr(kinds, "TWO_D", None) or kinds._2D  # renamed in face-alignment 1.4
        self._net = face_alignment.FaceAlignment(kind, device=device, flip_input=False)

    def __call__(self, image: np.ndarray, face: FaceBox) -> np.ndarray | None:
        """(3, 2): left eye, right eye and mouth centres (means of points 36-41, 42-47 and 48-67), or None."""
        found = self._net.get_landmarks_from_image(image, detected_faces=[np.array([face.x1, face.y1, face.x2, face.y2, face.score])])
        if not found:
            return None
        points = np.asarray(found[0])[:, :2]
        return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[48:68].mean(0)])


def _load_fan() -> FanLandmarks | None:
    """The 68-point landmarker when face-alignment is installed and its model loads, else None (YuNet's points)."""
    try:
        return FanLandmarks("cuda" if torch.cuda.is_available() else "cpu")
    except ImportError:
        return None
    except Exception as error:  # noqa: BLE001 - a failed weight download shows up as many kinds of error
        log.warning("face-alignment is installed but its model could not be loaded (%s); using YuNet's five points instead", error)
        return None


class MouthParser:
    """A BiSeNet-style face-parsing ONNX model, run with OpenCV's dnn module: face crop -> mouth mask."""

    def __init__(self, model_path: PathLike):
        path = Path(model_path)
        if not path.is_file():
            raise PreparationError(f"the face-parsing model {path} does not exist")
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
            classes = self._logits(np.zeros((PARSING_SIZE, PARSING_SIZE, 3), np.uint8)).shape[0]
        except cv2.error as error:
            raise PreparationError(
                f"cannot run {path} as a face-parsing model with OpenCV ({getattr(error, 'err', None) or error}); give a BiSeNet ONNX "
                f"export taking a 1 x 3 x {PARSING_SIZE} x {PARSING_SIZE} image"
            ) from error
        if classes != PARSING_CLASSES:
            raise PreparationError(
                f"{path} gives {classes} classes, but a face-parsing model with the {PARSING_CLASSES} CelebAMask-HQ classes "
                f"is needed (mouth and lips are {', '.join(map(str, MOUTH_CLASSES))})"
            )

    def _logits(self, crop: np.ndarray) -> np.ndarray:
        """(classes, 512, 512) scores of an RGB uint8 crop."""
        image = cv2.resize(crop, (PARSING_SIZE, PARSING_SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
        image = (image - np.float32(PARSING_MEAN)) / np.float32(PARSING_STD)
        self._net.setInput(np.ascontiguousarray(image.transpose(2, 0, 1)[None]))
        return self._net.forward()[0]  # a model with several outputs (BiSeNet's auxiliary heads) gives its first

    def __call__(self, crop: np.ndarray, size: int) -> np.ndarray:
        """(size, size) uint8 mask of an RGB crop: 1 on the mouth and lips, else 0."""
        mouth = np.isin(self._logits(crop).argmax(0), MOUTH_CLASSES).astype(np.uint8)
        return cv2.resize(mouth, (size, size), interpolation=cv2.INTER_NEAREST)


@dataclass
class Tools:
    """The networks one process uses, loaded once per process: detector, optional landmarker and parser."""

    detector: YuNetDetector
    landmarks: FanLandmarks | None
    parser: MouthParser | None

    @classmethod
    def load(cls, settings: Settings) -> Tools:
        parser = MouthParser(settings.face_parsing) if settings.face_parsing else None
        return cls(YuNetDetector(), _load_fan(), parser)

    @property
    def landmark_source(self) -> str:
        return self.landmarks.source if self.landmarks is not None else "yunet5"


# ------------------------------------------------------------------------------------------ one video


@dataclass
class _Track:
    """What the first pass over a video found, per 25 fps frame."""

    times: list[Fraction] = field(default_factory=list)
    boxes: list[CropBox | None] = field(default_factory=list)  # the crop square of the frame's face, unsmoothed
    anchors: list[np.ndarray | None] = field(default_factory=list)  # (3, 2) eye and mouth centres, image pixels
    scene_cuts: list[bool] = field(default_factory=list)  # True where a new shot starts at this frame


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).astype(np.float32)


def _scan(path: Path, tools: Tools, margin: float) -> _Track:
    """First pass: every 25 fps frame's face (the largest), crop square, landmarks, and scene cuts."""
    track = _Track()
    previous = None
    for time, frame in frames_at_25fps(path):
        thumbnail = _thumbnail(frame)
        track.times.append(time)
        track.scene_cuts.append(previous is not None and float(np.abs(thumbnail - previous).mean()) > SCENE_CUT_LEVELS)
        previous = thumbnail
        faces = tools.detector.faces_with_points(frame)
        if not faces:
            track.boxes.append(None)
            track.anchors.append(None)
            continue
        face = select_face([box for box, _ in faces], "largest")
        points = next(points for box, points in faces if box is face)
        anchors = tools.landmarks(frame, face) if tools.landmarks is not None else None
        track.boxes.append(crop_box(face, frame.shape[1], frame.shape[0], margin))
        track.anchors.append(anchors if anchors is not None else _yunet_anchors(points))
    return track


def _face_jumps(before: CropBox, after: CropBox) -> bool:
    shift = math.hypot(after.left + after.size / 2 - before.left - before.size / 2, after.top + after.size / 2 - before.top - before.size / 2)
    scale = max(after.size, before.size) / min(after.size, before.size)
    return shift > FACE_JUMP_SHIFT * before.size or scale > FACE_JUMP_SCALE


def _stretches(usable: Sequence[bool], cuts: Sequence[bool]) -> list[tuple[int, int]]:
    """[start, end) ranges of consecutive usable frames, broken where `cuts` is True."""
    stretches = []
    start = None
    for index, (ok, cut) in enumerate(zip(usable, cuts)):
        if start is not None and (not ok or cut):
            stretches.append((start, index))
            start = None
        if ok and start is None:
            start = index
    if start is not None:
        stretches.append((start, len(usable)))
    return stretches


def _square(centre: np.ndarray, side: float, size: int) -> list[float]:
    half = side / 2
    x0, y0 = np.clip(centre - half, 0, size)
    x1, y1 = np.clip(centre + half, 0, size)
    return [round(float(v), 2) for v in (x0, y0, x1, y1)]


def component_boxes(anchors: np.ndarray, box: CropBox, size: int) -> dict[str, list[float]]:
    """Eye and mouth boxes [x0, y0, x1, y1] in the pixels of a `size` crop cut at `box`, from the
    (3, 2) left eye, right eye and mouth centres in the original image (see the module docstring)."""
    points = (anchors - np.array([box.left, box.top])) * (size / box.size)
    left_eye, right_eye, mouth = points
    distance = max(float(np.linalg.norm(right_eye - left_eye)), 1.0)
    return {
        "left_eye": _square(left_eye, EYE_BOX_SIDE * distance, size),
        "right_eye": _square(right_eye, EYE_BOX_SIDE * distance, size),
        "mouth": _square(mouth, MOUTH_BOX_SIDE * distance, size),
    }


def _write_wav(path: Path, samples: np.ndarray) -> None:
    def write(temporary: Path) -> None:
        with wave.open(str(temporary), "wb") as file:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(SAMPLE_RATE)
            file.writeframes((np.clip(samples, -1, 1) * 32767).round().astype("<i2").tobytes())

    write_atomically(path, write)


def _clip_files(out_dir: Path, name: str, parsing: bool) -> list[Path]:
    """A clip's files, the .mp4 last: it is written last, so that a clip `find_clips` sees is complete."""
    suffixes = [".wav", ".boxes.json"] + ([".mouth.npz"] if parsing else []) + [".mp4"]
    return [out_dir / f"{name}{suffix}" for suffix in suffixes]


def _prefix(relative: str) -> str:
    """Clip names' common part: the video's path relative to the input folder, without suffix, "/" -> "_"."""
    return Path(relative).with_suffix("").as_posix().replace("/", "_")


def prepare_video(path: Path, relative: str, out_dir: Path, settings: Settings, tools: Tools) -> VideoResult:
    """Turns one video into clips in `out_dir` (see the module docstring); the clips' names start with
    `relative` (the video's path under the input folder). Videos that give no clips are reported as skipped."""
    result = VideoResult(relative, "prepared")
    try:
        try:
            with av.open(str(path)) as container:
                has_video, has_audio = bool(container.streams.video), bool(container.streams.audio)
            if not has_video:
                raise SkipVideo("no video track")
            if not has_audio:
                raise SkipVideo("no audio track")
            speech, speech_start = _speech(path)
            track = _scan(path, tools, settings.margin)
        except (av.FFmpegError, MediaError) as error:
            raise SkipVideo(f"unreadable: {error}") from error
        _cut_into_clips(path, track, speech, speech_start, out_dir, settings, tools, result)
    except SkipVideo as skip:
        result.status, result.reason, result.clips = "skipped", str(skip), {}
    return result


def _cut_into_clips(
    path: Path, track: _Track, speech: np.ndarray, speech_start: Fraction, out_dir: Path, settings: Settings, tools: Tools, result: VideoResult
) -> None:
    """Finds the stretches worth keeping in a scanned video, writes them as clips (the second pass over
    the video) and fills in `result`; raises SkipVideo when none is worth keeping."""
    frames = len(track.times)
    result.frames = frames
    result.frames_with_face = sum(box is not None for box in track.boxes)
    if frames == 0:
        raise SkipVideo("unreadable: no video frames")
    if result.frames_with_face == 0:
        raise SkipVideo("no face found in any frame")
    # The first speech sample of each frame; frames whose 640 samples are not all there cannot be used.
    first_sample = [round((time - speech_start) * SAMPLE_RATE) for time in track.times]
    usable = [box is not None and 0 <= start and start + SAMPLES_PER_FRAME <= len(speech) for box, start in zip(track.boxes, first_sample)]
    cuts = [
        cut or (i > 0 and track.boxes[i] is not None and track.boxes[i - 1] is not None and _face_jumps(track.boxes[i - 1], track.boxes[i]))
        for i, cut in enumerate(track.scene_cuts)
    ]
    result.cuts = sum(cuts)
    stretches = _stretches(usable, cuts)
    kept = [(start, end) for start, end in stretches if end - start >= settings.min_frames]
    result.short_stretches = len(stretches) - len(kept)
    if not kept:
        seconds = frames / FPS
        raise SkipVideo(
            f"too short: the video lasts {seconds:.1f} s, clips need {settings.min_seconds:g} s"
            if frames < settings.min_frames
            else f"too short: no stretch of {settings.min_seconds:g} s with a face and speech in every frame and no cut"
        )

    boxes: list[CropBox | None] = [None] * frames
    for start, end in kept:
        # Smoothed within each stretch only: across a cut it would blend two unrelated shots.
        boxes[start:end] = smooth_boxes(track.boxes[start:end], BOX_SMOOTHING)
    prefix = _prefix(result.video)
    # The second pass over the video, shared by its clips in order: each clip takes its frames as they come.
    decoded = enumerate(frame for _, frame in frames_at_25fps(path))
    for index, (start, end) in enumerate(kept):
        name = f"{prefix}_{index:03d}"
        description = {
            "size": settings.size,
            "fps": FPS,
            "source": tools.landmark_source,
            "video": result.video,
            "start": float(track.times[start] - track.times[0]),
            "frames": [component_boxes(track.anchors[i], boxes[i], settings.size) for i in range(start, end)],
        }
        samples = speech[first_sample[start] : first_sample[start] + (end - start) * SAMPLES_PER_FRAME]
        _write_clip(out_dir, name, _clip_frames(decoded, boxes, start, end, path), samples, description, tools.parser)
        result.clips[name] = end - start


def _clip_frames(
    decoded: Iterator[tuple[int, np.ndarray]], boxes: Sequence[CropBox | None], start: int, end: int, path: Path
) -> Iterator[tuple[np.ndarray, CropBox]]:
    """(frame, smoothed crop square) for frames [start, end) of the numbered frames `decoded`, which it
    advances to frame `end - 1` and no further, so that the next clip can go on from there."""
    for index, frame in decoded:
        if index >= start:
            yield frame, boxes[index]
        if index == end - 1:
            return
    raise MediaError(f"{path} gave fewer frames when decoded a second time; was it changed meanwhile?")


def _write_clip(
    out_dir: Path, name: str, frames: Iterator[tuple[np.ndarray, CropBox]], samples: np.ndarray, description: dict, parser: MouthParser | None
) -> None:
    """Writes a clip's .wav, .boxes.json (from `description`), .mouth.npz with a parser, and lastly its .mp4,
    cutting the crops from `frames` and encoding them as they come."""
    size = description["size"]
    wav, boxes_json, *rest = _clip_files(out_dir, name, parser is not None)
    _write_wav(wav, samples)
    write_atomically(boxes_json, lambda temporary: temporary.write_text(json.dumps(description)))
    audio = torch.from_numpy(np.ascontiguousarray(samples))[None]
    masks: list[np.ndarray] = []

    def crops() -> Iterator[torch.Tensor]:
        for frame, box in frames:
            if parser is not None:
                masks.append(parser(cut_crop(frame, box, PARSING_SIZE), size))
            yield torch.from_numpy(cut_crop(frame, box, size))[None]

    if parser is None:
        write_video(rest[-1], crops(), FPS, audio, SAMPLE_RATE, crf=CRF)
        return
    # The video goes to a hidden name first: the masks are complete only once every frame has been cut.
    hidden_video = out_dir / f".{name}{UNMASKED_SUFFIX}"
    try:
        write_video(hidden_video, crops(), FPS, audio, SAMPLE_RATE, crf=CRF)
        mask_file, video_file = rest

        def write_masks(temporary: Path) -> None:
            with open(temporary, "wb") as file:  # a file object, or numpy would add ".npz" to the name
                np.savez_compressed(file, mouth=np.stack(masks))

        write_atomically(mask_file, write_masks)
        os.replace(hidden_video, video_file)
    finally:
        hidden_video.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ many videos


def find_videos(videos_dir: PathLike, exclude: PathLike | None = None) -> list[Path]:
    """Every video (.mp4 .mov .mkv .webm, any case) under `videos_dir`, recursively, sorted; hidden files
    and anything under `exclude` (the clips folder, when it lies inside the videos folder) left out."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise PreparationError(f"the videos folder {root} does not exist")
    excluded = Path(exclude).resolve() if exclude is not None else None
    videos = []
    for path in root.rglob("*"):
        if path.suffix.lower() not in VIDEO_SUFFIXES or path.name.startswith(".") or not path.is_file():
            continue
        if excluded is not None and path.resolve().is_relative_to(excluded):
            continue
        videos.append(path)
    return sorted(videos)


def _check_names(videos: Sequence[Path], root: Path) -> None:
    """Two videos whose clips would share names (a.mp4 and a.mov, or x/a_b.mp4 and x_a/b.mp4) stop the run."""
    seen: dict[str, Path] = {}
    for video in videos:
        prefix = _prefix(video.relative_to(root).as_posix())
        if prefix in seen:
            raise PreparationError(f"{seen[prefix]} and {video} would give clips of the same names ({prefix}_000, ...): rename one of them")
        seen[prefix] = video


def _file_identity(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _load_state(out_dir: Path) -> dict[str, dict]:
    path = out_dir / STATE_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())["videos"]
    except (ValueError, KeyError) as error:
        raise PreparationError(f"{path} is damaged ({error}); delete it to prepare every video again") from error


def _save_state(out_dir: Path, state: dict[str, dict]) -> None:
    text = json.dumps({"format": FORMAT_VERSION, "videos": dict(sorted(state.items()))}, indent=1)
    write_atomically(out_dir / STATE_NAME, lambda temporary: temporary.write_text(text))


def _already_done(entry: dict | None, path: Path, out_dir: Path, settings_record: dict) -> bool:
    """Whether a video's record says it was prepared (or skipped) from this very file with these settings,
    and all its clips are still there."""
    if entry is None or entry.get("file") != _file_identity(path) or entry.get("settings") != settings_record:
        return False
    parsing = settings_record["face_parsing"] is not None
    return all(file.is_file() for name in entry["result"]["clips"] for file in _clip_files(out_dir, name, parsing))


def _remove_clips(entry: dict | None, out_dir: Path) -> None:
    """Removes the clips an earlier run made from a video, before it is prepared again (perhaps into fewer)."""
    for name in (entry or {}).get("result", {}).get("clips", {}):
        for file in _clip_files(out_dir, name, parsing=True):
            file.unlink(missing_ok=True)


_worker_tools: Tools | None = None


def _start_worker(settings: Settings) -> None:
    """Process-pool initialiser: one thread per process (the processes share the cores), tools loaded once."""
    global _worker_tools
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _worker_tools = Tools.load(settings)


def _prepare_in_worker(path: Path, relative: str, out_dir: Path, settings: Settings) -> VideoResult:
    return prepare_video(path, relative, out_dir, settings, _worker_tools)


def prepare_videos(
    videos_dir: PathLike,
    out_dir: PathLike,
    size: int = 512,
    workers: int = 1,
    min_seconds: float = 2.4,
    margin: float = MARGIN,
    face_parsing: PathLike | None = None,
    progress: bool = True,
) -> PreparationReport:
    """Prepares every video under `videos_dir` into clips in `out_dir` (see the module docstring) and returns
    the report, also saved as `out_dir/report.json`.

    size: the crops' side in pixels (even: H.264 needs it). workers: videos prepared at once, each in its own
    process (started fresh, so a script calling this needs the usual `if __name__ == "__main__":`). min_seconds: shorter stretches are dropped. margin: the crop's half side over the face box's
    (1.6 as at inference). face_parsing: a BiSeNet-style ONNX model; with it, each clip also gets a mouth mask.
    progress: a tqdm bar over the videos when tqdm is installed, else a log line per video.
    A video that cannot be used is skipped with its reason; an unexpected error with one video is reported as
    "failed", and the others go on. Raises PreparationError when the run cannot start.
    """
    if size < 16 or size % 2:
        raise PreparationError(f"size must be an even number of pixels, at least 16, got {size}")
    if workers < 1:
        raise PreparationError(f"workers must be at least 1, got {workers}")
    if min_seconds <= 0 or margin <= 0:
        raise PreparationError(f"min_seconds and margin must be positive, got {min_seconds} and {margin}")
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    settings = Settings(size, float(min_seconds), float(margin), str(Path(face_parsing).resolve()) if face_parsing else None)
    settings_record = {"format": FORMAT_VERSION, **asdict(settings)}
    videos = find_videos(videos_dir, exclude=out_dir)
    _check_names(videos, videos_dir)
    # A face-parsing model that cannot be used stops the run here, before any work (in the workers, too late).
    tools = Tools.load(settings) if workers == 1 else None
    if tools is None and settings.face_parsing:
        MouthParser(settings.face_parsing)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Left by a run that was killed outright (SIGKILL, power loss) and so could not remove its own.
    for leftover in [*out_dir.glob(".*.part"), *out_dir.glob(f".*{UNMASKED_SUFFIX}")]:
        leftover.unlink()

    state = _load_state(out_dir)
    results: dict[str, VideoResult] = {}
    pending: list[tuple[Path, str]] = []
    for path in videos:
        relative = path.relative_to(videos_dir).as_posix()
        entry = state.get(relative)
        if _already_done(entry, path, out_dir, settings_record):
            earlier = VideoResult(**entry["result"])
            if earlier.status == "prepared":
                earlier.status = "already prepared"
            results[relative] = earlier
        else:
            _remove_clips(entry, out_dir)
            state.pop(relative, None)
            pending.append((path, relative))
    log.info("%d videos in %s: %d to prepare, %d already done", len(videos), videos_dir, len(pending), len(videos) - len(pending))

    bar = tqdm(total=len(pending), desc="preparing videos", unit="video") if progress and tqdm is not None and pending else None

    def record(path: Path, relative: str, result: VideoResult) -> None:
        results[relative] = result
        # Failures are not recorded, so that the next run tries those videos again.
        if result.status != "failed":
            state[relative] = {"file": _file_identity(path), "settings": settings_record, "result": asdict(result)}
            _save_state(out_dir, state)
        if bar is not None:
            bar.update()
        else:
            log.info("%s: %s, %d clips%s", relative, result.status, len(result.clips), f" ({result.reason})" if result.reason else "")

    def failed(relative: str, error: Exception) -> VideoResult:
        log.error("%s failed", relative, exc_info=error)
        return VideoResult(relative, "failed", reason=f"{type(error).__name__}: {error}")

    try:
        if workers == 1:
            for path, relative in pending:
                try:
                    result = prepare_video(path, relative, out_dir, settings, tools)
                except Exception as error:  # noqa: BLE001 - one video's problem must not stop the others
                    result = failed(relative, error)
                record(path, relative, result)
        elif pending:
            # "spawn": forked children of a process that has used torch's or OpenCV's threads can hang.
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(settings,)) as pool:
                futures = {pool.submit(_prepare_in_worker, path, relative, out_dir, settings): (path, relative) for path, relative in pending}
                for future in as_completed(futures):
                    path, relative = futures[future]
                    try:
                        result = future.result()
                    except Exception as error:  # noqa: BLE001
                        result = failed(relative, error)
                    record(path, relative, result)
    finally:
        if bar is not None:
            bar.close()

    report = PreparationReport(out_dir, [results[key] for key in sorted(results)])
    write_atomically(out_dir / REPORT_NAME, lambda temporary: temporary.write_text(json.dumps(report.to_dict(), indent=1)))
    log.info("%d clips in %s; report saved as %s", len(report.clips), out_dir, out_dir / REPORT_NAME)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.prepare",
        description="Cut raw talking-head videos into training clips: 25 fps face crops, 16 kHz speech, eye and mouth boxes.",
    )
    parser.add_argument("--videos", type=Path, required=True, help="folder of videos (.mp4 .mov .mkv .webm), searched recursively")
    parser.add_argument("--out", type=Path, required=True, help="clips folder (created; an existing one is resumed)")
    parser.add_argument("--size", type=int, default=512, help="side of the square face crops in pixels (default 512)")
    parser.add_argument("--workers", type=int, default=1, help="videos prepared in parallel processes (default 1)")
    parser.add_argument("--min-seconds", type=float, default=2.4, help="drop stretches shorter than this (default 2.4 s: one phase-2 window)")
    parser.add_argument("--margin", type=float, default=MARGIN, help=f"crop half side over face box half side (default {MARGIN}, as at inference)")
    parser.add_argument("--face-parsing", type=Path, default=None, help="BiSeNet face-parsing ONNX model: also write <name>.mouth.npz masks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = prepare_videos(args.videos, args.out, args.size, args.workers, args.min_seconds, args.margin, args.face_parsing)
    except PreparationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled: the videos prepared so far are kept; run the same command again to go on", file=sys.stderr)
        return 130
    print(report.summary())
    return 1 if report.count("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
