"""Reading prepared training clips: square face crops at 25 fps, each with its speech.

A folder of prepared clips holds, per clip:

    <name>.mp4   square face crops at 25 fps, any resolution (resized here to the model's image size)
    <name>.wav   the clip's speech, 16 kHz mono; optional: without it, the mp4's own audio track is used

    find_clips(folder)                    -> [Clip(name, video, audio)], sorted by name
    read_frames(video, size, batch)       -> batches of (n, size, size, 3) uint8 RGB frames, streamed
    read_frames_at(video, indices, size)  -> chosen frames, by seeking (phase 1's random pairs)
    read_speech(clip)                     -> (waveform (N,) float32 at 16 kHz, 16000)

Preparation (face tracking, cropping, re-timing to 25 fps) happens before this: the model runs at
25 fps, so a clip at another rate would pair each motion frame with the wrong 40 ms of speech. Every
problem is a `MediaError` (a `ClipError` for those particular to training clips) whose message names
the file and what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from torch import Tensor

from float_model.face import resize_square
from float_model.media import MediaError, PathLike, load_audio
from float_model.speech import SAMPLE_RATE, to_model_audio

FPS = 25
# Average frame rates of 25 fps files come out as e.g. 24.998 after timestamp rounding.
FPS_TOLERANCE = 0.01


class ClipError(MediaError):
    """A prepared clip is missing, unreadable or not prepared as training needs; the message says which and why."""


@dataclass(frozen=True)
class Clip:
    """One prepared clip: its name (the file stem), its video, and where its speech is read from
    (the .wav beside the video, or the video itself when there is no .wav)."""

    name: str
    video: Path
    audio: Path


def find_clips(folder: PathLike) -> list[Clip]:
    """Every `<name>.mp4` in `folder` (not its subfolders), sorted by name, each paired with `<name>.wav`
    when that exists. Raises ClipError when the folder is missing or holds no clips."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipError(f"the clips folder {folder} does not exist")
    clips = []
    for video in folder.iterdir():
        # Names starting with "." are macOS resource forks ("._x.mp4") and unfinished writes, not clips.
        if video.suffix.lower() != ".mp4" or video.name.startswith(".") or not video.is_file():
            continue
        wav = video.with_suffix(".wav")
        clips.append(Clip(video.stem, video, wav if wav.is_file() else video))
    if not clips:
        raise ClipError(f"no prepared clips (<name>.mp4, with <name>.wav beside it) in {folder}")
    return sorted(clips, key=lambda clip: clip.name)


def _check_stream(stream: av.video.stream.VideoStream, path: Path) -> None:
    rate = stream.average_rate or stream.guessed_rate
    if rate is None:
        raise ClipError(f"cannot tell the frame rate of {path}; clips must be prepared at {FPS} fps")
    if abs(float(rate) - FPS) > FPS_TOLERANCE:
        raise ClipError(
            f"{path} runs at {float(rate):g} fps, but clips must be prepared at {FPS} fps (FLOAT's motion frame rate), "
            f"e.g. with `ffmpeg -i INPUT -r {FPS} OUTPUT.mp4`"
        )


def read_frames(video_path: PathLike, size: int, batch: int) -> Iterator[np.ndarray]:
    """The frames of a prepared clip in batches of up to `batch`, each (n, size, size, 3) uint8 RGB.

    Frames are decoded as they are needed, so a long clip never sits in memory whole. Raises ClipError
    (when the first batch is asked for) if the file is unreadable, has no video, is not at 25 fps, is
    not square, or holds no frames.
    """
    path = Path(video_path)
    if not path.is_file():
        raise ClipError(f"video not found: {path}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipError(f"{path} has no video stream")
            stream = container.streams.video[0]
            _check_stream(stream, path)
            stream.thread_type = "AUTO"  # frame-parallel decoding: several times faster on long clips
            pending: list[np.ndarray] = []
            count = 0
            for frame in container.decode(stream):
                if frame.width != frame.height:
                    raise ClipError(
                        f"{path} is {frame.width}x{frame.height}; clips must be square face crops (prepare them with the face tracker)"
                    )
                pending.append(resize_square(frame.to_ndarray(format="rgb24"), size))
                count += 1
                if len(pending) == batch:
                    yield np.stack(pending)
                    pending = []
            if pending:
                yield np.stack(pending)
    except av.FFmpegError as error:
        raise ClipError(f"cannot read {path} as a video ({error}); prepared clips are H.264 mp4 files") from error
    if count == 0:
        raise ClipError(f"{path} holds no frames; the clip is empty or was cut short")


def read_frames_at(video_path: PathLike, indices: list[int], size: int) -> list[np.ndarray]:
    """Chosen frames of a prepared clip, (size, size, 3) uint8 RGB each, in the order asked: phase 1 reads
    a few frames per clip, so it seeks to the keyframe before each one instead of decoding the whole clip."""
    path = Path(video_path)
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            _check_stream(stream, path)
            for target in sorted(set(indices)):
                if target in found:
                    continue
                container.seek(int(target / FPS / stream.time_base), stream=stream, backward=True)
                for frame in container.decode(stream):
                    index = round(float(frame.pts * stream.time_base) * FPS)
                    if index in indices and index not in found:
                        found[index] = resize_square(frame.to_ndarray(format="rgb24"), size)
                    if index >= target:
                        break
    except (av.FFmpegError, IndexError) as error:
        raise ClipError(f"cannot read frames of {path} ({error}); prepared clips are H.264 mp4 files") from error
    missing = [i for i in indices if i not in found]
    if missing:
        raise ClipError(f"{path} has no frame {missing[0]}: the clip is shorter than its index says; prepare it again")
    return [found[i] for i in indices]


def read_speech(clip: Clip) -> tuple[Tensor, int]:
    """A clip's speech as a mono 16 kHz waveform (N,) float32 in [-1, 1], and 16000.

    Read from the clip's .wav, or from the mp4's own audio track when there is no .wav; channels are
    averaged and other rates resampled with soxr (float_model's `to_model_audio`, as at inference).
    """
    if clip.audio == clip.video:
        try:
            with av.open(str(clip.video)) as container:
                has_sound = bool(container.streams.audio)
        except av.FFmpegError as error:
            raise ClipError(f"cannot read {clip.video} ({error})") from error
        if not has_sound:
            raise ClipError(
                f"clip {clip.name!r} has no speech: there is no {clip.video.with_suffix('.wav').name} beside "
                f"{clip.video} and the video has no audio track"
            )
    waveform, sample_rate = load_audio(clip.audio)
    return to_model_audio(waveform, sample_rate)[0], SAMPLE_RATE
