"""Reading the user's files: a portrait image and a speech clip, in whatever format they come.

    load_image(path)  -> (H, W, 3) uint8 RGB, upright, transparency composited over a background
    load_audio(path)  -> waveform (C, N) float32 in [-1, 1] with every channel, and its sample rate

Images are read with Pillow, audio with PyAV (FFmpeg), so wav, flac, mp3, ogg, opus, m4a, aac and the
audio track of a video file all work. Nothing here resizes or resamples: that is the caller's choice.
Every failure is a `MediaError` that names the file and what to do about it.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

PathLike = str | Path

# Pillow modes holding 16 (or 32) bits per grey sample; Pillow's own convert("RGB") clips them at 255
# instead of scaling, which would turn most 16-bit portraits white.
WIDE_GREY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


class MediaError(ValueError):
    """An image or audio file is missing, unreadable or unsuitable; the message names the file and the fix."""


def _existing_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise MediaError(f"file not found: {path}")
    if not path.is_file():
        raise MediaError(f"{path} is a folder, not a file")
    return path


def _check_background(background: tuple[int, int, int]) -> tuple[int, int, int]:
    values = tuple(background)
    if len(values) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in values):
        raise MediaError(f"background must be an (R, G, B) triple of integers 0-255, got {background!r}")
    return tuple(int(v) for v in values)


def _wide_grey_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit grey (0-65535) -> 8-bit grey by rounding value / 257, so that 65535 stays white."""
    grey = np.asarray(image).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8))


def _has_transparency(image: Image.Image) -> bool:
    # A "transparency" entry is a colour key (RGB, L) or a palette index (P) marked see-through.
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any Pillow mode -> RGB; see-through pixels are blended over `background`."""
    if image.mode in WIDE_GREY_MODES:
        image = _wide_grey_to_8bit(image)
    if _has_transparency(image):
        # Blend rather than drop the alpha: dropping it exposes whatever colour the transparent pixels
        # happen to store, often black or garbage around a cut-out portrait.
        backdrop = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(backdrop, image.convert("RGBA")).convert("RGB")
    # CMYK, grey, palette and 1-bit images: Pillow's conversion (CMYK without colour management).
    return image.convert("RGB")


def load_image(path: PathLike, background: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB array, turned upright by its EXIF orientation.

    Transparent and half-transparent pixels (RGBA, LA, palette or colour-key transparency) are blended
    over `background`, an (R, G, B) triple of 0-255, black by default. Grey, 16-bit grey, palette and
    CMYK images become RGB; 16-bit grey is scaled (value / 257), not clipped. Raises MediaError when the
    file is missing or is not an image Pillow can read.
    """
    path = _existing_file(path)
    background = _check_background(background)
    try:
        with Image.open(path) as image:
            # Phones store portraits sideways and record the rotation in EXIF; honour it.
            upright = ImageOps.exif_transpose(image)
            rgb = _to_rgb(upright, background)
    except (OSError, ValueError) as error:  # Pillow signals unreadable data with both
        raise MediaError(f"cannot read {path} as an image ({error}); use a PNG, JPEG or WebP file") from error
    return np.array(rgb, dtype=np.uint8)


def _decode_audio(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, path: Path
) -> tuple[np.ndarray, int]:
    """All samples of one audio stream -> (C, N) float32 array and the sample rate."""
    # Converting every frame to planar float ("fltp") gives (C, n) arrays whatever the codec's native
    # layout: packed formats (s16, flt) would otherwise come back as (1, n * C). The resampler keeps the
    # frame's own rate and layout, so it only changes the sample format and never resamples.
    to_planar_float = av.AudioResampler(format="fltp")
    chunks: list[np.ndarray] = []
    first: av.AudioFrame | None = None
    for frame in container.decode(stream):
        if first is None:
            first = frame
        elif (frame.sample_rate, frame.layout.nb_channels) != (first.sample_rate, first.layout.nb_channels):
            raise MediaError(
                f"the audio in {path} changes from {first.sample_rate} Hz, {first.layout.nb_channels} channel(s) to "
                f"{frame.sample_rate} Hz, {frame.layout.nb_channels} channel(s) midway; convert it to one format first, "
                "e.g. with `ffmpeg -i INPUT -ac 2 -ar 48000 OUTPUT.wav`"
            )
        chunks.extend(planar.to_ndarray() for planar in to_planar_float.resample(frame))
    # Flush whatever the converter still holds; a pass-through converter answers [None].
    chunks.extend(planar.to_ndarray() for planar in to_planar_float.resample(None) if planar is not None)
    if first is None or sum(chunk.shape[1] for chunk in chunks) == 0:
        raise MediaError(f"the audio stream of {path} holds no samples; the file is empty or cut short")
    return np.concatenate(chunks, axis=1), first.sample_rate


def load_audio(path: PathLike) -> tuple[Tensor, int]:
    """An audio file, or a video file with sound -> (waveform (C, N) float32 in [-1, 1], sample rate in Hz).

    All channels are kept in the file's order (for stereo: left, right), at the file's own sample rate.
    A file with several audio tracks gives its default one. Lossy decoders (mp3, aac, opus) can overshoot
    full scale by a little; those peaks are clipped to [-1, 1]. The length may exceed the original
    recording by up to one codec frame of padding (e.g. 1024 samples for aac). Raises MediaError when
    the file is missing, unreadable, has no audio stream, or has no samples.
    """
    path = _existing_file(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.best("audio")
            if stream is None:
                raise MediaError(f"{path} has no audio stream; give a sound file or a video with sound")
            samples, sample_rate = _decode_audio(container, stream, path)
    except av.FFmpegError as error:
        raise MediaError(f"cannot read audio from {path} ({error}); use a wav, flac, mp3, ogg or m4a file") from error
    waveform = torch.from_numpy(samples).clamp_(-1.0, 1.0)
    return waveform, sample_rate
