"""Portrait + speech -> frames, composed from the stage functions in the order of the paper:

    encode the portrait -> reference motion -> audio features and emotion -> sample motion
    -> (resample to the output frame rate) -> decode, frame batch by frame batch

Frames come out of a generator, so a long clip never holds its frames in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .acceleration import compile_model
from .model import FloatModel
from .motion import resample_motion
from .sampling import SamplingProgress, sample_motion
from .speech import SAMPLE_RATE, emotion_from_label, emotion_per_window, encode_audio, predict_emotion, prepare_audio

# "predict": one emotion for the clip from speech; "per-window": predicted every 2 s; else a label.
EMOTION_MODES = ("predict", "per-window")
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class GenerationSettings:
    nfe: int = 10
    solver: str = "euler"
    audio_scale: float = 2.0
    emotion_scale: float = 1.0
    seed: int | None = None
    emotion: str = "predict"
    fps: float = 25.0
    official: bool = False
    decode_batch_size: int = 1
    # On a GPU: keep the speech networks (1.6 GB in float32) on the CPU except while they condition.
    offload: bool = False
    # torch.compile the FMT and the decoder (CUDA graphs for the FMT on CUDA); first call is slow.
    compile: bool = False


def image_to_model(image: np.ndarray) -> Tensor:
    """RGB uint8 (H, W, 3) or a batch (N, H, W, 3), e.g. face crops -> (N, 3, H, W) in [-1, 1]:
    the official x / 255 * 2 - 1."""
    if image.ndim not in (3, 4) or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3) or batch (N, H, W, 3), got {image.dtype} {image.shape}")
    batch = image[None] if image.ndim == 3 else image
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 255 * 2 - 1


def frames_to_images(frames: Tensor) -> Tensor:
    """Raw decoder frames (N, 3, H, W), about [-1, 1] -> images (N, H, W, 3) in [0, 1] (clamped here, at the edge)."""
    return ((frames.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)


def _emotion(model: FloatModel, settings: GenerationSettings, waveform: Tensor, frames: int) -> Tensor:
    if settings.emotion == "predict":
        return predict_emotion(model, waveform, official=settings.official)
    if settings.emotion == "per-window":
        return emotion_per_window(model, waveform, frames)
    return emotion_from_label(settings.emotion, waveform.shape[0], model.config.emotion_labels)


@contextmanager
def _speech_networks_on(model: FloatModel, device: torch.device | None) -> Iterator[None]:
    """Move the wav2vec2 and emotion networks to `device` for the block and back to the CPU after it
    (no-op for None or a CPU model)."""
    networks = [n for n in (model.audio_encoder, model.emotion_encoder) if n is not None]
    if device is None or device.type == "cpu":
        yield
        return
    for network in networks:
        network.to(device)
    try:
        yield
    finally:
        for network in networks:
            network.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()


def animate(
    model: FloatModel,
    image: Tensor,
    audio: Tensor,
    sample_rate: int,
    settings: GenerationSettings = GenerationSettings(),
    progress: Progress | None = None,
) -> tuple[Iterator[Tensor], int]:
    """Animate a portrait with speech.

    image (B, 3, 512, 512) in [-1, 1]; audio (N,), (C, N) or (B, C, N) at any sample rate. A batch of
    one image is animated with every clip, and one clip drives every image. Returns a generator of
    raw frame batches (n, 3, 512, 512) (frames of batch item b follow those of b - 1) and the number
    of frames per item: ceil(seconds * fps). Sampling happens before the first frame is yielded.
    """
    if settings.compile:
        compile_model(model)
    encoded = model.encode_image(image)
    waveform, frames = prepare_audio(audio, sample_rate)
    batch = max(encoded.identity_latent.shape[0], waveform.shape[0])
    if {encoded.identity_latent.shape[0], waveform.shape[0]} - {1, batch}:
        raise ValueError(f"{encoded.identity_latent.shape[0]} images and {waveform.shape[0]} audio clips: give one of each, or the same number")
    identity = encoded.identity_latent.expand(batch, -1)
    features = [f.expand(batch, -1, -1, -1) for f in encoded.features]
    waveform = waveform.expand(batch, -1)
    reference = model.motion_latent(encoded.motion_coefficients).expand(batch, -1)

    with _speech_networks_on(model, model.device if settings.offload else None):
        audio_features = encode_audio(model, waveform, frames, official=settings.official)
        emotion = _emotion(model, settings, waveform, frames)

    def sampling_progress(p: SamplingProgress) -> None:
        if progress is not None and p.chunk_motion is None:  # one report per evaluation
            progress("sampling", p.evaluations_done, p.evaluations_total)

    motion = sample_motion(
        model, audio_features, reference, emotion,
        nfe=settings.nfe, solver=settings.solver, audio_scale=settings.audio_scale, emotion_scale=settings.emotion_scale,
        seed=settings.seed, official=settings.official, callback=sampling_progress,
    )  # fmt: skip
    if settings.fps != model.config.fps:
        motion = resample_motion(motion, waveform.shape[-1] / SAMPLE_RATE, settings.fps, model.config.fps)

    def frames_out() -> Iterator[Tensor]:
        done, total = 0, batch * motion.shape[1]
        for decoded in model.iter_decode(identity, features, motion, settings.decode_batch_size):
            done += decoded.shape[0]
            if progress is not None:
                progress("decoding", done, total)
            yield decoded

    return frames_out(), motion.shape[1]
