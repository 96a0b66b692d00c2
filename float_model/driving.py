"""Motion from a driving video instead of (or blended with) speech, as in LIA-style reenactment.

    driving frames -> face box per frame, smoothed over time -> 512 crops -> motion encoder
    -> motion latents m_t (the motion basis applied to each frame's coefficients)
    -> portrait motion r_s + (m_t - m_0): the driving face's changes since its first frame,
       applied to the portrait's own reference motion

Cropping every frame at its own (smoothed) box takes the head's travel across the picture out, so
the motion carries pose and expression, as FLOAT's training crops do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .crop_box import CropBox
from .face import MARGIN, FaceDetector, NoFaceError, YuNetDetector, as_rgb, crop_box, cut_crop, select_face
from .model import FloatModel
from .motion import smooth_motion
from .pipeline import image_to_model


def smooth_boxes(boxes: Sequence[CropBox | None], sigma: float = 2.0) -> list[CropBox]:
    """Gaussian smoothing of the squares' centres and sizes over time (sigma in frames, 0 = none).
    Frames without a face (None) take the smoothed box of the frames that have one."""
    found = [i for i, box in enumerate(boxes) if box is not None]
    if not found:
        raise NoFaceError("no face found in any driving frame: use a video showing a clearly visible face")
    reference = boxes[found[0]]
    track = np.array([[b.left + b.size / 2, b.top + b.size / 2, b.size] for b in boxes if b is not None], dtype=np.float64)
    frames = np.arange(len(boxes))
    # fill the gaps by interpolation, then smooth
    values = np.stack([np.interp(frames, found, track[:, k]) for k in range(3)], axis=1)
    # centre x, centre y and side smoothed like a motion sequence of width 3
    values = smooth_motion(torch.from_numpy(values)[None], sigma)[0].numpy()
    return [
        CropBox(round(cx - size / 2), round(cy - size / 2), max(1, round(size)), reference.image_width, reference.image_height)
        for cx, cy, size in values
    ]


def track_face(
    frames: Sequence[np.ndarray] | np.ndarray,
    detector: FaceDetector | None = None,
    which: str = "largest",
    margin: float = MARGIN,
    smoothing: float = 2.0,
) -> list[CropBox]:
    """One crop square per driving frame (N, H, W, 3): detected, chosen, then smoothed over time."""
    detector = detector or YuNetDetector()
    boxes: list[CropBox | None] = []
    for frame in frames:
        frame = as_rgb(np.asarray(frame))
        faces = detector(frame)
        boxes.append(crop_box(select_face(faces, which), frame.shape[1], frame.shape[0], margin) if faces else None)
    return smooth_boxes(boxes, smoothing)


def video_motion(
    model: FloatModel,
    frames: Sequence[np.ndarray] | np.ndarray,
    reference_motion: Tensor,
    boxes: Sequence[CropBox] | None = None,
    batch_size: int = 8,
) -> Tensor:
    """Driving frames (N, H, W, 3) -> motion latents (1, N, D) for a portrait with reference motion (1, D).

    Frame 0 of the result is the portrait's own reference motion. `boxes` default to `track_face`.
    """
    boxes = list(boxes) if boxes is not None else track_face(frames)
    if len(boxes) != len(frames):
        raise ValueError(f"{len(frames)} driving frames but {len(boxes)} crop boxes")
    size = model.config.motion_autoencoder.image_size
    latents = []
    for start in range(0, len(frames), batch_size):
        crops = np.stack([cut_crop(as_rgb(np.asarray(frames[i])), boxes[i], size) for i in range(start, min(start + batch_size, len(frames)))])
        latents.append(model.motion_latent(model.encode_image(image_to_model(crops)).motion_coefficients))
    driving = torch.cat(latents)
    reference = reference_motion.to(driving).reshape(1, 1, -1)
    return reference + (driving - driving[:1])[None]


def blend_motion(audio_motion: Tensor, video_motion: Tensor, weight: float | Tensor, basis: Tensor | None = None) -> Tensor:
    """weight x audio-driven + (1 - weight) x video-driven motion, both (B, T, D).

    `weight` is a number or one per frame (T,). With `basis` (D, K) it is a number, per frame (T, 1),
    per basis direction (K,) or both (T, K): the coordinates along the directions are blended and the
    part of the motion outside the basis comes from the audio, so chosen directions (say the mouth's)
    can follow the speech while the others follow the video.
    """
    if audio_motion.shape != video_motion.shape:
        raise ValueError(f"audio motion {tuple(audio_motion.shape)} and video motion {tuple(video_motion.shape)} differ: resample them to the same frame count")
    weight = torch.as_tensor(weight, dtype=audio_motion.dtype, device=audio_motion.device)
    frames = audio_motion.shape[1]
    if basis is None:
        if weight.dim() > 1 or (weight.dim() == 1 and weight.shape[0] != frames):
            raise ValueError(f"weight must be a number or one per frame ({frames},); per-direction weights need the motion basis")
        weight = weight.reshape(1, -1, 1) if weight.dim() == 1 else weight
        return weight * audio_motion + (1 - weight) * video_motion
    basis = basis.to(audio_motion)
    if weight.dim() > 2 or (weight.dim() >= 1 and weight.shape[-1] not in (1, basis.shape[1])) or (weight.dim() == 2 and weight.shape[0] != frames):
        raise ValueError(f"with a basis, weight must be a number, (T, 1), (K,) or (T, K) with T = {frames}, K = {basis.shape[1]}; got {tuple(weight.shape)}")
    audio_coords, video_coords = audio_motion @ basis, video_motion @ basis
    coords = weight * audio_coords + (1 - weight) * video_coords
    return audio_motion - audio_coords @ basis.T + coords @ basis.T


def split_by_frequency(audio_motion: Tensor, video_motion: Tensor, sigma_frames: float) -> Tensor:
    """Slow movement from the video, quick movement from the audio: smooth(video) + audio - smooth(audio).

    Head turns and nods are slower than the lips, so the split keeps the video's head motion and the
    speech's lip motion without knowing which basis directions move what. `sigma_frames` is the Gaussian
    width that divides slow from quick (about 0.2 s works at 25 fps); both motions are (B, T, D).
    """
    if audio_motion.shape != video_motion.shape:
        raise ValueError(f"audio motion {tuple(audio_motion.shape)} and video motion {tuple(video_motion.shape)} differ: resample them to the same frame count")
    if sigma_frames <= 0:
        raise ValueError(f"the split needs a positive width in frames, got {sigma_frames}")
    return smooth_motion(video_motion, sigma_frames) + audio_motion - smooth_motion(audio_motion, sigma_frames)
