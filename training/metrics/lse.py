"""LSE-D and LSE-C: lip-sync error measured by SyncNet (Chung & Zisserman 2016), as Wav2Lip defined them.

SyncNet embeds 5 video frames (0.2 s of the lower face) and the 0.2 s of speech under them (20 MFCC
frames) into one space, where in-sync pairs lie close. For each window of 5 frames, the audio embeddings
at shifts of -15..+15 frames are compared; averaging the distances over the video gives one distance per
shift. Then

    LSE-D = the smallest mean distance (lower is better),
    LSE-C = median over shifts - smallest (the confidence that the best shift is real; higher is better),

per video, averaged over videos; LSE for the real videos is reported beside them as the reference.

The definition is this project's own, with the module names of the original release so that its
weights load by key. The original `syncnet_v2.model` is a pickle, which this tool never loads: it needs a
safetensors copy with the same keys. The inputs follow the original pipeline: 25 fps frames, cropped
around the face as it crops (see `syncnet_crop`), resized to 224 x 224, BGR in [0, 255]; speech at
16 kHz in int16 scale, 13 MFCCs every 10 ms computed as python_speech_features does (`mfcc`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from float_model.media import MediaError

from .registry import Metric, MetricContext, NotEnoughData, Score, WeightFile, load_state, load_tensors
from .videos import Video

WEIGHTS = WeightFile(
    "syncnet_v2.safetensors",
    "a safetensors copy of VGG's SyncNet `syncnet_v2.model` (fetched by download_model.sh in github.com/joonson/syncnet_python, MIT)",
    convert_from="syncnet_v2.model",
    conversion=(
        "convert the original once, in an environment you trust, keeping its key names: python -c \"import torch, "
        "safetensors.torch as s; s.save_file(torch.load('syncnet_v2.model', map_location='cpu', weights_only=True), "
        "'syncnet_v2.safetensors')\""
    ),
)
FPS = 25
SAMPLE_RATE = 16_000
WINDOW = 5  # video frames per SyncNet sample
MFCC_PER_FRAME = 4  # 10 ms MFCC frames per 40 ms video frame
MAX_SHIFT = 15  # frames, each way
FACE_SIZE = 224
PAD_VALUE = 110  # the grey the original pipeline pads crops with
BATCH = 20
# FLOAT's crop is a square of side 2 * 1.6 * b around the face-box centre, b = half the box's longer side;
# SyncNet's pipeline crops a square of side 2.8 * b, centred horizontally, from b above the centre to
# 1.8 * b below it. In units of FLOAT's crop side (0 = top / left edge):
SYNCNET_BOX = (0.5 - 1.4 / 3.2, 0.5 - 1.0 / 3.2, 2.8 / 3.2)  # left, top, side


def conv_bn(layer: nn.Module, channels: int, norm: type[nn.Module]) -> list[nn.Module]:
    """A convolution, its batch norm and a ReLU: three entries, so the Sequential's indices (and with them
    the weight keys, e.g. netcnnaud.4.weight) are the original's."""
    return [layer, norm(channels), nn.ReLU()]


class SyncNet(nn.Module):
    """SyncNet's audio and lip streams, each ending in a 1024-d embedding.

    Audio: MFCC windows (N, 1, 13, 20). Lips: (N, 3, 5, 224, 224) BGR in [0, 255].
    """

    def __init__(self):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *conv_bn(nn.Conv2d(1, 64, 3, padding=1), 64, nn.BatchNorm2d), nn.MaxPool2d(1, stride=1),
            *conv_bn(nn.Conv2d(64, 192, 3, padding=1), 192, nn.BatchNorm2d), nn.MaxPool2d(3, stride=(1, 2)),
            *conv_bn(nn.Conv2d(192, 384, 3, padding=1), 384, nn.BatchNorm2d),
            *conv_bn(nn.Conv2d(384, 256, 3, padding=1), 256, nn.BatchNorm2d),
            *conv_bn(nn.Conv2d(256, 256, 3, padding=1), 256, nn.BatchNorm2d), nn.MaxPool2d(3, stride=2),
            *conv_bn(nn.Conv2d(256, 512, (5, 4)), 512, nn.BatchNorm2d),
        )  # fmt: skip
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
        self.netcnnlip = nn.Sequential(
            *conv_bn(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96, nn.BatchNorm3d),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *conv_bn(nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256, nn.BatchNorm3d),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, nn.BatchNorm3d),
            *conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, nn.BatchNorm3d),
            *conv_bn(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, nn.BatchNorm3d),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *conv_bn(nn.Conv3d(256, 512, (1, 6, 6)), 512, nn.BatchNorm3d),
        )  # fmt: skip
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))

    def embed_audio(self, mfcc: Tensor) -> Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_lips(self, frames: Tensor) -> Tensor:
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def load_syncnet(path, device: torch.device) -> SyncNet:
    network = SyncNet()
    load_state(network, load_tensors(path), path)
    return network.eval().to(device)


# --- MFCC, as python_speech_features.mfcc computes it with its defaults -------------------------------


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595 * np.log10(1 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700 * (10 ** (mel / 2595.0) - 1)


def mel_filterbank(filters: int = 26, fft_size: int = 512, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(filters, fft_size // 2 + 1) triangular filters evenly spaced on the mel scale from 0 Hz to Nyquist,
    their edges rounded down to FFT bins."""
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), filters + 2)
    bins = np.floor((fft_size + 1) * _mel_to_hz(mel_points) / sample_rate).astype(int)
    bank = np.zeros((filters, fft_size // 2 + 1))
    for j in range(filters):
        left, centre, right = bins[j], bins[j + 1], bins[j + 2]
        for i in range(left, centre):
            bank[j, i] = (i - left) / (centre - left)
        for i in range(centre, right):
            bank[j, i] = (right - i) / (right - centre)
    return bank


def dct_matrix(outputs: int, inputs: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix (outputs, inputs): row k is the k-th cosine basis vector."""
    n = np.arange(inputs)
    matrix = np.cos(np.pi * np.arange(outputs)[:, None] * (2 * n + 1) / (2 * inputs)) * np.sqrt(2.0 / inputs)
    matrix[0] /= np.sqrt(2.0)
    return matrix


def mfcc(signal: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(frames, 13) MFCCs of a mono signal: 25 ms rectangular frames every 10 ms (the last zero-padded),
    pre-emphasis 0.97, 512-point power spectrum, 26 mel filters, log, DCT-II, cepstral lifter 22, and the
    first coefficient replaced by the log frame energy."""
    frame_length, step, fft_size = round(0.025 * sample_rate), round(0.01 * sample_rate), 512
    emphasised = np.append(signal[:1], signal[1:] - 0.97 * signal[:-1]).astype(np.float64)
    count = 1 if len(emphasised) <= frame_length else 1 + math.ceil((len(emphasised) - frame_length) / step)
    padded = np.concatenate([emphasised, np.zeros((count - 1) * step + frame_length - len(emphasised))])
    indices = np.arange(frame_length)[None, :] + step * np.arange(count)[:, None]
    power = np.abs(np.fft.rfft(padded[indices], fft_size)) ** 2 / fft_size
    tiny = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy[energy == 0] = tiny
    filtered = power @ mel_filterbank(26, fft_size, sample_rate).T
    filtered[filtered == 0] = tiny
    coefficients = np.log(filtered) @ dct_matrix(13, 26).T
    coefficients *= 1 + 11 * np.sin(np.pi * np.arange(13) / 22)
    coefficients[:, 0] = np.log(energy)
    return coefficients


# --- Scoring ------------------------------------------------------------------------------------------


def syncnet_crop(frame: np.ndarray) -> np.ndarray:
    """A FLOAT-style face crop (S, S, 3) RGB -> SyncNet's crop of the same face, 224 x 224 BGR.

    Both pipelines cut squares around the same face box, so SyncNet's (narrower, reaching lower, below
    the chin) is a fixed window of FLOAT's; what it needs beyond the frame is padded with grey, as the
    original pads."""
    height, width = frame.shape[:2]
    left, top, side = round(SYNCNET_BOX[0] * width), round(SYNCNET_BOX[1] * height), round(SYNCNET_BOX[2] * width)
    padded = cv2.copyMakeBorder(frame, 0, max(0, top + side - height), 0, max(0, left + side - width), cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    crop = padded[top : top + side, left : left + side]
    return cv2.cvtColor(cv2.resize(crop, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LINEAR), cv2.COLOR_RGB2BGR)  # as the original


@dataclass(frozen=True)
class SyncScores:
    """One video's lip sync."""

    distance: float  # LSE-D of one video
    confidence: float  # LSE-C of one video
    offset: int  # frames by which the speech leads the lips at the best shift (negative: it lags)


def sync_scores(lip_embeddings: Tensor, audio_embeddings: Tensor, max_shift: int = MAX_SHIFT) -> SyncScores:
    """LSE from per-window embeddings (W, D) of the lips and of the speech under them.

    Window i's lips are compared with the audio of windows i - max_shift .. i + max_shift (zeros past the
    ends, as the original pads); the distances are averaged over windows for each shift.
    """
    shifts = 2 * max_shift + 1
    padded = F.pad(audio_embeddings, (0, 0, max_shift, max_shift))
    distances = torch.stack([
        F.pairwise_distance(lip_embeddings[i : i + 1].expand(shifts, -1), padded[i : i + shifts])
        for i in range(len(lip_embeddings))
    ])  # fmt: skip  # (W, shifts)
    mean = distances.mean(dim=0)
    smallest, best = mean.min(dim=0)
    return SyncScores(float(smallest), float(mean.median() - smallest), max_shift - int(best))


def video_sync_scores(network: SyncNet, frames: np.ndarray, speech: Tensor, device: torch.device) -> SyncScores:
    """LSE of one 25 fps video with its 16 kHz speech, windows batched as the original does."""
    length = min(len(frames), len(speech) // (SAMPLE_RATE // FPS))
    windows = length - WINDOW
    if windows < 1:
        raise NotEnoughData(f"LSE needs more than {WINDOW} frames with speech under them, got {length}")
    faces = torch.from_numpy(np.stack([syncnet_crop(frame) for frame in frames[:length]])).permute(3, 0, 1, 2).float()
    coefficients = torch.from_numpy(mfcc(speech.numpy().astype(np.float64) * 32768)).T.float()  # (13, T), int16 scale
    lips, audio = [], []
    for start in range(0, windows, BATCH):
        batch = range(start, min(windows, start + BATCH))
        lips.append(network.embed_lips(torch.stack([faces[:, i : i + WINDOW] for i in batch]).to(device)).cpu())
        sound = [coefficients[:, i * MFCC_PER_FRAME : i * MFCC_PER_FRAME + WINDOW * MFCC_PER_FRAME] for i in batch]
        audio.append(network.embed_audio(torch.stack(sound)[:, None].to(device)).cpu())
    return sync_scores(torch.cat(lips), torch.cat(audio))


def score_videos(network: SyncNet, videos: Sequence[Video], device: torch.device) -> tuple[list[SyncScores], list[str]]:
    """The LSE of each video that can be scored, and why the others cannot (frame rate, length, no speech)."""
    scores, problems = [], []
    for video in videos:
        if abs(video.fps - FPS) > 0.01:
            problems.append(f"{video.clip.video.name} runs at {video.fps:g} fps, SyncNet needs {FPS}")
            continue
        try:
            scores.append(video_sync_scores(network, video.frames, video.speech, device))
        except (NotEnoughData, MediaError) as error:  # too short, or no speech to score against
            problems.append(f"{video.clip.video.name}: {error}")
    return scores, problems


def _means(scores: list[SyncScores], suffix: str = "") -> dict[str, float]:
    return {
        f"LSE-D{suffix}": float(np.mean([s.distance for s in scores])),
        f"LSE-C{suffix}": float(np.mean([s.confidence for s in scores])),
    }


def compute_lse(real: Sequence[Video], generated: Sequence[Video], context: MetricContext) -> Score:
    network = load_syncnet(context.weights[WEIGHTS.name], context.device)
    scores, problems = score_videos(network, generated, context.device)
    if not scores:
        raise NotEnoughData(f"no generated video could be scored for lip sync: {'; '.join(problems)}")
    real_scores, real_problems = score_videos(network, real, context.device)
    values = _means(scores) | (_means(real_scores, " (real)") if real_scores else {})
    return Score(
        values,
        counts={"generated_videos": len(scores), "real_videos": len(real_scores)},
        notes=tuple(f"not scored: {problem}" for problem in problems + real_problems),
    )


LSE = Metric("lse", "lip-sync error: SyncNet distance (LSE-D) and confidence (LSE-C)", (WEIGHTS,), compute_lse)
