"""The videos the metrics compare: pairs of real and generated clips matched by file stem, at one frame size.

    pair_videos(generated_dir, real_dir, size) -> VideoPairs (real, generated: lazy sequences of Video)
    read_frames(path, size)                     -> ((T, H, W, 3) uint8 RGB, fps)

A video is decoded only when a metric asks for it, and is not kept, so memory holds one video at a time
however many clips are evaluated (each metric reads the clips again; decoding is cheap next to the
networks). Real and generated frames are resized to one size (the generated videos' by default), so
that paired metrics compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import av
import cv2
import numpy as np
from torch import Tensor

from float_model.media import MediaError
from training.clips import Clip, find_clips, read_speech

Size = tuple[int, int]  # (height, width)


def resize_frame(frame: np.ndarray, size: Size) -> np.ndarray:
    """(H, W, 3) uint8 -> (size[0], size[1], 3): area averaging when shrinking (no aliasing), bicubic when
    enlarging, as for the training clips."""
    if frame.shape[:2] == size:
        return frame
    shrinking = frame.shape[0] * frame.shape[1] > size[0] * size[1]
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def read_frames(path: Path, size: Size | None = None) -> tuple[np.ndarray, float]:
    """All frames of a video as (T, H, W, 3) uint8 RGB, resized to `size` when given, and its frame rate."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    except av.FFmpegError as error:
        raise MediaError(f"cannot read {path} as a video ({error})") from error
    if not frames:
        raise MediaError(f"{path} holds no frames")
    if size is not None:
        frames = [resize_frame(frame, size) for frame in frames]
    return np.stack(frames), float(rate) if rate else 0.0


def frame_size(path: Path) -> Size:
    """The (height, width) of a video's frames, read from its stream header."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return stream.codec_context.height, stream.codec_context.width
    except (av.FFmpegError, IndexError) as error:
        raise MediaError(f"cannot read the frame size of {path} ({error})") from error


@dataclass
class Video:
    """One decoded video: its clip (name, file, where its speech is), frames (T, H, W, 3) uint8 RGB at the
    common size, and frame rate. The speech is read only when asked for (only lip sync needs it)."""

    clip: Clip
    frames: np.ndarray
    fps: float

    @property
    def name(self) -> str:
        return self.clip.name

    @cached_property
    def speech(self) -> Tensor:
        """Mono 16 kHz waveform (N,): the .wav beside the video, else the video's own audio track."""
        return read_speech(self.clip)[0]


class Videos(Sequence[Video]):
    """Clips decoded on access, each resized to `size`: a sequence that holds no frames itself."""

    def __init__(self, clips: Sequence[Clip], size: Size):
        self.clips = list(clips)
        self.size = size

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Video:  # type: ignore[override]  # slices are not needed
        clip = self.clips[index]
        frames, fps = read_frames(clip.video, self.size)
        return Video(clip, frames, fps)


@dataclass(frozen=True)
class VideoPairs:
    """Real and generated videos of the clips found in both folders (same order), and the clips found in
    only one of them (reported, not scored)."""

    real: Videos
    generated: Videos
    only_generated: list[str]
    only_real: list[str]

    @property
    def names(self) -> list[str]:
        return [clip.name for clip in self.real.clips]


def pair_videos(generated_dir: Path, real_dir: Path, size: Size | None = None) -> VideoPairs:
    """Pairs `<name>.mp4` in both folders by name. The common frame size is `size`, else that of the first
    generated video. Raises MediaError when no name is in both folders."""
    generated = {clip.name: clip for clip in find_clips(generated_dir)}
    real = {clip.name: clip for clip in find_clips(real_dir)}
    names = sorted(generated.keys() & real.keys())
    if not names:
        raise MediaError(
            f"no video in {generated_dir} has a real counterpart of the same name in {real_dir} "
            f"(generated: {', '.join(sorted(generated)[:5])}; real: {', '.join(sorted(real)[:5])})"
        )
    common = size or frame_size(generated[names[0]].video)
    return VideoPairs(
        real=Videos([real[name] for name in names], common),
        generated=Videos([generated[name] for name in names], common),
        only_generated=sorted(generated.keys() - real.keys()),
        only_real=sorted(real.keys() - generated.keys()),
    )
