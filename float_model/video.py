"""Decoder frames and the driving audio -> an H.264/AAC mp4, streamed batch by batch.

    frames_to_uint8(frames)                      raw decoder output -> (N, H, W, 3) uint8
    frame_rate(fps)                              25, 29.97, ... -> exact Fraction (30000/1001)
    write_video(path, batches, fps, audio, sr)   an iterable of frame batches -> path.mp4

Memory stays constant in the number of frames: each batch is encoded as it arrives, and the audio is
encoded alongside so that the muxer can interleave both streams. The file appears at `path` only once
it is complete: it is written to a hidden temporary file beside `path` and renamed at the end.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch import Tensor

from .media import MediaError, PathLike

# FFmpeg's default layout for each channel count, so that surround audio is mixed down to stereo with
# FFmpeg's standard matrix (centre and surrounds folded into left and right at -3 dB, LFE dropped).
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# The AAC encoder's default in the FFmpeg command line, which the official FLOAT pipeline uses.
AUDIO_BIT_RATE = 128_000


def frames_to_uint8(frames: Tensor) -> Tensor:
    """Raw decoder frames (N, 3, H, W), about [-1, 1] -> (N, H, W, 3) uint8 on the same device.

    Exactly the official FLOAT writer: clamp to [-1, 1], then (x + 1) / 2 * 255 in float32, converted to
    uint8 by truncation (not rounding), so 0.0 -> 127 and 0.999 -> 254. Raises MediaError on NaN, which
    would otherwise turn silently into black pixels.
    """
    if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
        raise MediaError(f"expected float frames of shape (N, 3, H, W), got {tuple(frames.shape)} {frames.dtype}")
    frames = frames.detach().float()
    if frames.isnan().any():
        raise MediaError("the frames contain NaN: the model produced invalid output (in float16, try bfloat16 or float32)")
    scaled = (frames.clamp(-1, 1) + 1) / 2 * 255
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def frame_rate(fps: float | Fraction) -> Fraction:
    """Frames per second (1 to 1000) as an exact fraction; NTSC rates (23.976, 29.97, 59.94) become
    n * 1000/1001, other rates the nearest fraction with a denominator up to 1001 (12.5 -> 25/2)."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not 1 <= fps <= 1000:
        raise MediaError(f"fps must be a number from 1 to 1000, such as 25 or 29.97, got {fps!r}")
    ntsc = round(fps * Fraction(1001, 1000))
    # 29.97 is written for 30000/1001 (29.97003); as a plain fraction it would be 2997/100 and drift.
    if ntsc > 0 and abs(fps - Fraction(ntsc * 1000, 1001)) < 0.001:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _as_uint8_batch(batch: Tensor) -> np.ndarray:
    """A batch of float (n, 3, H, W) or uint8 (n, H, W, 3) frames -> contiguous (n, H, W, 3) uint8 array."""
    if not isinstance(batch, Tensor):
        raise MediaError(f"expected each batch of frames to be a torch.Tensor, got {type(batch).__name__}")
    if batch.dtype == torch.uint8 and batch.dim() == 4 and batch.shape[3] == 3:
        return np.ascontiguousarray(batch.detach().cpu().numpy())
    if batch.is_floating_point() and batch.dim() == 4 and batch.shape[1] == 3:
        return frames_to_uint8(batch).cpu().numpy()
    raise MediaError(
        f"expected a batch of frames (n, 3, H, W) float in about [-1, 1] or (n, H, W, 3) uint8, "
        f"got {tuple(batch.shape)} {batch.dtype}"
    )


def _audio_array(audio: Tensor, sample_rate: int | None) -> np.ndarray:
    """Checks the audio to mux and returns it as a (C, N) float32 array."""
    if not isinstance(audio, Tensor) or audio.dim() != 2 or audio.shape[1] == 0 or not audio.is_floating_point():
        shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
        raise MediaError(f"expected audio as a float tensor (C, N) with N > 0, got {shape} (for mono (N,), pass audio[None])")
    if audio.shape[0] not in DEFAULT_LAYOUTS:
        raise MediaError(
            f"audio has {audio.shape[0]} channels; write_video takes 1 to 8 (7.1): pick the channels to keep first"
        )
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise MediaError(f"audio needs its sample rate as a positive integer in Hz, got sample_rate={sample_rate!r}")
    return np.ascontiguousarray(audio.detach().to("cpu", torch.float32).numpy())


def _aac_rate(sample_rate: int) -> int:
    """The sample rate to store: the audio's own, or the nearest one AAC supports (192 kHz -> 96 kHz)."""
    supported = av.codec.Codec("aac", "w").audio_rates
    return min(supported, key=lambda rate: abs(rate - sample_rate))


def _check_output_path(path: Path) -> None:
    if path.suffix.lower() != ".mp4":
        raise MediaError(f"write_video writes mp4 files; name the output '{path.stem}.mp4' instead of '{path.name}'")
    if not path.parent.is_dir():
        raise MediaError(f"the output folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise MediaError(f"{path} is a folder; give a file name for the video")


class _AudioTrack:
    """The AAC stream of the output, fed in step with the video so both streams interleave in the file."""

    def __init__(self, container: av.container.OutputContainer, samples: np.ndarray, sample_rate: int):
        self.container = container
        self.samples = samples
        self.sample_rate = sample_rate
        self.layout = DEFAULT_LAYOUTS[samples.shape[0]]
        self.position = 0
        # A stream rate or layout other than the input's is converted by PyAV's encoder (libswresample).
        self.stream = container.add_stream("aac", rate=_aac_rate(sample_rate))
        self.stream.layout = "mono" if samples.shape[0] == 1 else "stereo"
        self.stream.bit_rate = AUDIO_BIT_RATE

    def encode_until(self, end: int) -> None:
        """Encodes the samples from the current position up to sample `end` (clipped to the track's length)."""
        end = min(end, self.samples.shape[1])
        if end <= self.position:
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(self.samples[:, self.position : end]), format="fltp", layout=self.layout
        )
        frame.sample_rate = self.sample_rate
        frame.time_base = Fraction(1, self.sample_rate)
        frame.pts = self.position
        self.container.mux(self.stream.encode(frame))
        self.position = end

    def finish(self) -> None:
        """Encodes the rest of the track (all of it, even past the end of the video) and flushes the encoder."""
        self.encode_until(self.samples.shape[1])
        self.container.mux(self.stream.encode(None))


def _add_video_stream(
    container: av.container.OutputContainer, height: int, width: int, rate: Fraction, crf: int
) -> av.video.stream.VideoStream:
    if height % 2 or width % 2:
        raise MediaError(
            f"H.264 in yuv420p needs an even width and height, got {width}x{height}: crop or pad the frames by one pixel"
        )
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"crf": str(crf)}
    return stream


def _encode(
    container: av.container.OutputContainer,
    batches: Iterable[Tensor],
    rate: Fraction,
    audio: np.ndarray | None,
    sample_rate: int | None,
    crf: int,
) -> None:
    """Encodes every batch as it arrives, the audio alongside, then the rest of the audio."""
    video = track = None
    count = 0
    for batch in batches:
        frames = _as_uint8_batch(batch)
        if video is None:
            video = _add_video_stream(container, frames.shape[1], frames.shape[2], rate, crf)
            # Streams must all exist before the first packet is written.
            track = _AudioTrack(container, audio, sample_rate) if audio is not None else None
        elif frames.shape[1:3] != (video.height, video.width):
            raise MediaError(
                f"all frames must have one size: the first were {video.width}x{video.height}, "
                f"a later batch is {frames.shape[2]}x{frames.shape[1]}"
            )
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = count
            container.mux(video.encode(frame))
            count += 1
        if track is not None:
            track.encode_until(math.floor(count / rate * sample_rate))
    if video is None:
        raise MediaError("no frames to write: the frame batches were empty")
    container.mux(video.encode(None))
    if track is not None:
        track.finish()


def write_video(
    path: PathLike,
    frames: Iterable[Tensor],
    fps: float | Fraction,
    audio: Tensor | None = None,
    sample_rate: int | None = None,
    crf: int = 18,
) -> Path:
    """Encodes batches of frames, and optionally audio, into an H.264/AAC mp4 at `path`; returns the path.

    frames: an iterable of batches (a generator is fine) or a single batch; each batch is raw decoder
    frames (n, 3, H, W) float in about [-1, 1] (converted by `frames_to_uint8`) or (n, H, W, 3) uint8
    RGB. H and W must be even (yuv420p). Each batch is encoded as it arrives, so memory does not grow
    with the video's length.
    fps: frames per second from 1 to 1000, e.g. 25 or 29.97 (stored as 30000/1001, see `frame_rate`).
    audio: (C, N) float in [-1, 1] at `sample_rate` Hz, stored whole as AAC even where it outlasts the
    video (as the official pipeline does). Mono stays mono; stereo stays stereo; 3 to 8 channels are
    read as FFmpeg's default layout for that count (6 = 5.1) and mixed down to stereo. Rates AAC cannot
    store (e.g. 192 kHz) are resampled to the nearest one it can (96 kHz).
    crf: x264 quality, 0 (best, largest file) to 51; 18 is visually near-lossless.

    The mp4 is written to a hidden temporary file beside `path` (".<name>.<random>.part") and renamed
    over `path` when complete. If anything raises, the frame iterable included (a cancellation, a
    KeyboardInterrupt), the temporary file is deleted, `path` is left as it was, and the error propagates.
    """
    path = Path(path)
    _check_output_path(path)
    rate = frame_rate(fps)
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise MediaError(f"crf must be an integer from 0 (best) to 51, got {crf!r}")
    # Check the audio before the first frame: a generator may spend minutes producing it.
    samples = _audio_array(audio, sample_rate) if audio is not None else None

    if isinstance(frames, Tensor):
        frames = [frames]

    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        # A Python file object keeps the file handle ours to close, whatever state FFmpeg is left in.
        with open(temporary, "wb") as file:
            container = av.open(file, mode="w", format="mp4")
            try:
                _encode(container, frames, rate, samples, sample_rate, crf)
            except BaseException:
                # The original error matters, not one from finalising a file that is about to go.
                with contextlib.suppress(Exception):
                    container.close()
                raise
            container.close()
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
