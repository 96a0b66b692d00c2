"""From a user's audio to FLOAT's conditions: mono 16 kHz waveform, audio features, emotion.

The model runs at 25 fps whatever the output frame rate: T = ceil(seconds * 25) motion frames.

Long clips: the official code encodes the whole clip in one pass, so its memory grows with the
clip's length (the wav2vec2 CNN alone holds 512 x 50 values per ms of audio). Default mode encodes in
overlapping windows (20 s with 2 s overlap, cross-faded), so memory stays flat; a clip shorter than
one window is encoded in one pass, giving exactly the official features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import soxr
import torch
from torch import Tensor

from .audio import normalize_waveform
from .config import EMOTIONS
from .model import FloatModel

SAMPLE_RATE = 16000
WINDOW_SECONDS = 20.0
OVERLAP_SECONDS = 2.0


def to_model_audio(waveform: Tensor, sample_rate: int) -> Tensor:
    """Any layout, rate and channel count -> mono 16 kHz (B, N) float32, not yet normalised.

    Accepts (N,), (C, N) or (B, C, N) (ComfyUI's AUDIO layout). Channels are averaged and resampled
    with soxr's HQ filter: exactly what the official `librosa.load(path, sr=16000)` does.
    """
    if waveform.dim() == 1:
        waveform = waveform[None, None]
    elif waveform.dim() == 2:
        waveform = waveform[None]
    if waveform.dim() != 3:
        raise ValueError(f"expected audio of shape (N,), (C, N) or (B, C, N), got {tuple(waveform.shape)}")
    if waveform.shape[-1] == 0 or waveform.shape[1] == 0:
        raise ValueError("the audio is empty: connect a clip with sound in it")
    if sample_rate <= 0:
        raise ValueError(f"invalid sample rate {sample_rate}")
    mono = waveform.float().mean(dim=1).cpu().numpy()
    if not np.isfinite(mono).all():
        raise ValueError("the audio contains NaN or infinite samples")
    if sample_rate != SAMPLE_RATE:
        mono = np.stack([soxr.resample(clip, sample_rate, SAMPLE_RATE, quality="HQ") for clip in mono])
    if mono.shape[-1] == 0:
        raise ValueError(f"the audio is too short: {waveform.shape[-1]} samples at {sample_rate} Hz is less than one sample at 16 kHz")
    return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))


def prepare_audio(waveform: Tensor, sample_rate: int) -> tuple[Tensor, int]:
    """User audio -> (normalised 16 kHz waveform (B, N), number of 25 fps motion frames T)."""
    mono = to_model_audio(waveform, sample_rate)
    return normalize_waveform(mono), num_motion_frames(mono.shape[-1])


def num_motion_frames(num_samples: int, fps: float = 25.0) -> int:
    """T = ceil(N * fps / 16000): a partial last frame counts."""
    return max(1, math.ceil(num_samples * fps / SAMPLE_RATE))


def _windows(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges covering the clip, neighbours sharing `overlap` frames."""
    if num_frames <= window:
        return [(0, num_frames)]
    step = window - overlap
    starts = list(range(0, num_frames - overlap, step))
    return [(start, min(start + window, num_frames)) for start in starts]


def encode_audio(
    model: FloatModel,
    waveform: Tensor,
    num_frames: int,
    official: bool = False,
    window_seconds: float = WINDOW_SECONDS,
    overlap_seconds: float = OVERLAP_SECONDS,
) -> Tensor:
    """Normalised 16 kHz waveform (B, N) -> audio features (B, T, A), in one pass (official mode or a
    short clip) or in cross-faded windows."""
    fps = model.config.fps
    window, overlap = round(window_seconds * fps), round(overlap_seconds * fps)
    ranges = [(0, num_frames)] if official else _windows(num_frames, window, overlap)
    if len(ranges) == 1:
        return model.audio_features(waveform, num_frames)
    per_frame = model.config.samples_per_frame
    features = weights = None
    for start, end in ranges:
        part = model.audio_features(waveform[:, start * per_frame : end * per_frame], end - start)
        if features is None:
            features = part.new_zeros(part.shape[0], num_frames, part.shape[-1])
            weights = torch.zeros(num_frames, device=part.device)
        # linear ramps over the overlaps, so neighbouring windows cross-fade
        ramp = torch.ones(end - start, device=part.device)
        fade = min(overlap, end - start)
        if start > 0:
            ramp[:fade] = torch.linspace(0, 1, fade + 2, device=part.device)[1:-1]
        if end < num_frames:
            ramp[-fade:] = torch.minimum(ramp[-fade:], torch.linspace(1, 0, fade + 2, device=part.device)[1:-1])
        features[:, start:end] += part * ramp[:, None].to(part.dtype)
        weights[start:end] += ramp
    return features / weights[None, :, None].to(features.dtype)


def predict_emotion(
    model: FloatModel,
    waveform: Tensor,
    official: bool = False,
    window_seconds: float = WINDOW_SECONDS,
) -> Tensor:
    """Normalised 16 kHz waveform (B, N), unpadded -> clip-level emotion probabilities (B, 7).

    The classifier mean-pools its last hidden states over time. Default mode runs it on windows of
    `window_seconds` and pools over all of them, so memory stays flat; a clip shorter than a window
    gives the official one-pass result.
    """
    window = int(window_seconds * SAMPLE_RATE)
    if official or waveform.shape[-1] <= window:
        return model.emotion(waveform)
    classifier = model.emotion_encoder.wav2vec2_for_emotion
    total, count = None, 0
    with torch.no_grad():
        for start in range(0, waveform.shape[-1], window):
            piece = model.cast(waveform[:, start : start + window], classifier)
            if piece.shape[-1] < 400:  # shorter than one wav2vec2 frame: nothing to pool
                continue
            hidden = classifier.wav2vec2(piece).last_hidden_state
            total = hidden.sum(dim=1) if total is None else total + hidden.sum(dim=1)
            count += hidden.shape[1]
        return classifier.classifier(total / count).softmax(dim=-1)


def emotion_per_window(model: FloatModel, waveform: Tensor, num_frames: int, window_seconds: float = 2.0) -> Tensor:
    """Emotion predicted on consecutive windows, held per frame: (B, T, 7), for emotion that changes over the clip."""
    if waveform.shape[-1] < 400:
        raise ValueError("the audio is shorter than 25 ms: too short to predict an emotion from; choose one instead")
    window = int(window_seconds * SAMPLE_RATE)
    per_frame = model.config.samples_per_frame
    frames_per_window = window // per_frame
    rows = []
    for start in range(0, num_frames, frames_per_window):
        piece = waveform[:, start * per_frame : start * per_frame + window]
        if piece.shape[-1] < 400:  # a sliver at the end: take the previous window's emotion
            rows.append(rows[-1][:, :1].expand(-1, min(frames_per_window, num_frames - start), -1))
            continue
        probabilities = model.emotion(piece)
        rows.append(probabilities[:, None].expand(-1, min(frames_per_window, num_frames - start), -1))
    return torch.cat(rows, dim=1)


def emotion_from_label(label: str, batch: int = 1, labels: Sequence[str] | None = None) -> Tensor:
    """A chosen emotion as a float one-hot (B, 7). Unknown names are an error, not a silent fallback."""
    labels = tuple(labels or EMOTIONS)
    name = label.strip().lower()
    if name not in labels:
        raise ValueError(f"unknown emotion {label!r}: choose one of {', '.join(labels)}")
    one_hot = torch.zeros(batch, len(labels))
    one_hot[:, labels.index(name)] = 1.0
    return one_hot


def emotion_schedule(keyframes: Sequence[tuple[float, str | Tensor]], num_frames: int, batch: int = 1, fps: float = 25.0, labels: Sequence[str] | None = None) -> Tensor:
    """Keyframes (seconds, label or probability vector (7,)) -> per-frame emotion (B, T, 7).

    Linear interpolation between keyframes; constant before the first and after the last.
    """
    if not keyframes:
        raise ValueError("an emotion schedule needs at least one keyframe")
    keyframes = sorted(keyframes, key=lambda item: item[0])
    times = torch.tensor([float(time) for time, _ in keyframes])
    values = torch.stack([emotion_from_label(v, 1, labels)[0] if isinstance(v, str) else torch.as_tensor(v, dtype=torch.float32) for _, v in keyframes])
    frame_times = torch.arange(num_frames) / fps
    index = torch.searchsorted(times, frame_times, right=True).clamp(1, len(times)) - 1
    following = (index + 1).clamp(max=len(times) - 1)
    span = (times[following] - times[index]).clamp(min=1e-9)
    weight = ((frame_times - times[index]) / span).clamp(0, 1)[:, None]
    schedule = values[index] * (1 - weight) + values[following] * weight
    return schedule[None].expand(batch, -1, -1).clone()
