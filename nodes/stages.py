"""One function per FLOAT stage, shared by the step-by-step nodes and the all-in-one node.

Each takes graph values (nodes/types.py) and ComfyUI data (IMAGE, AUDIO), puts the networks it needs on
their device for the call, reports progress, honours Cancel, and returns a new graph value. The model
work itself is float_model's; nothing here computes what float_model already does.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from ..float_model.checkpoint import load_emotion_encoder
from ..float_model.face import MARGIN, YuNetDetector, as_rgb, cut_crop, find_crop
from ..float_model.motion import resample_motion
from ..float_model.pipeline import frames_to_images, image_to_model
from ..float_model.sampling import SamplingProgress, iter_sample_motion
from ..float_model.speech import SAMPLE_RATE, emotion_from_label, emotion_per_window, encode_audio, predict_emotion, prepare_audio
from .runtime import Progress, locate_or_download, to_intermediate, working
from .types import Appearance, AudioFeatures, Crops, Emotion, LazyEmotionModel, LoadedAudioEncoder, LoadedFloat, Motion

CROP_SIZE = 512
DETECTION_THRESHOLD = 0.6


def image_batch_to_uint8(images: Tensor) -> list[np.ndarray]:
    """ComfyUI IMAGE (B, H, W, C) in [0, 1], C = 1, 3 or 4 -> RGB uint8 pictures (alpha composited over black)."""
    if images.dim() != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an IMAGE batch (B, H, W, 1|3|4), got shape {tuple(images.shape)}")
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return [as_rgb(picture) for picture in pixels]


def crop_faces(
    images: Tensor, face: str = "largest", index: int = 0, margin: float = MARGIN, threshold: float = DETECTION_THRESHOLD, if_no_face: str = "error"
) -> tuple[Tensor, Crops]:
    """IMAGE of any size -> 512 x 512 face crops (IMAGE) and where they came from."""
    detector = YuNetDetector(threshold=threshold)
    pictures = image_batch_to_uint8(images)
    crops, boxes = [], []
    progress = Progress(len(pictures))
    for number, picture in enumerate(pictures):
        try:
            box = find_crop(picture, detector, which=face, index=index, margin=margin, if_no_face=if_no_face)
        except ValueError as error:  # no face, or no face at that index
            where = f"image {number + 1} of {len(pictures)}: " if len(pictures) > 1 else ""
            raise ValueError(f"FLOAT Face Crop, {where}{error}") from error
        crops.append(cut_crop(picture, box, CROP_SIZE))
        boxes.append(box)
        progress(number + 1)
    batch = torch.from_numpy(np.stack(crops)).float() / 255
    return to_intermediate(batch), Crops(tuple(boxes))


def encode_portraits(loaded: LoadedFloat, images: Tensor) -> Appearance:
    """Square portraits (IMAGE, any size: resized to the model's) -> identity, feature pyramid, motion coefficients."""
    size = loaded.model.config.motion_autoencoder.image_size
    pictures = image_batch_to_uint8(images)
    height, width = pictures[0].shape[:2]
    if height != width:
        raise ValueError(
            f"FLOAT Encode Image needs square portraits ({size} x {size}); this image is {width} x {height}: "
            f"put a FLOAT Face Crop node before it"
        )
    if height != size:
        interpolation = cv2.INTER_AREA if height > size else cv2.INTER_CUBIC
        pictures = [cv2.resize(picture, (size, size), interpolation=interpolation) for picture in pictures]
    autoencoder = loaded.model.motion_autoencoder
    with working((autoencoder, loaded.placement)):
        encoded = loaded.model.encode_image(image_to_model(np.stack(pictures)))
    return Appearance(
        identity_latent=to_intermediate(encoded.identity_latent),
        features=tuple(to_intermediate(f) for f in encoded.features),
        motion_coefficients=to_intermediate(encoded.motion_coefficients),
    )


def extract_audio_features(loaded: LoadedFloat, encoder: LoadedAudioEncoder, audio: dict, fps: float, official: bool) -> AudioFeatures:
    """ComfyUI AUDIO (any rate, channels and batch) -> wav2vec2 features at 25 fps and the prepared waveform."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise ValueError("expected a ComfyUI AUDIO input (a dict with 'waveform' and 'sample_rate'), e.g. from Load Audio")
    waveform, frames = prepare_audio(audio["waveform"], int(audio["sample_rate"]))
    model = loaded.model.with_speech_networks(wav2vec2=encoder.wav2vec2)
    projection = loaded.model.audio_encoder.audio_projection
    with working((encoder.wav2vec2, encoder.placement), (projection, loaded.placement)):
        features = encode_audio(model, waveform, frames, official=official)
    return AudioFeatures(to_intermediate(features), waveform, float(fps), waveform.shape[-1] / SAMPLE_RATE)


def _emotion_encoder(handle: LazyEmotionModel) -> torch.nn.Module:
    """Read the emotion classifier on first use; later runs reuse it while its loader node is unchanged."""
    if handle.encoder is None:
        path = locate_or_download(handle.name, "emotion")
        handle.encoder = load_emotion_encoder(path, handle.placement.resting_device, handle.placement.dtype)
    return handle.encoder


def speech_emotion(loaded: LoadedFloat, emotion_model: LazyEmotionModel, features: AudioFeatures, per_window: bool) -> Emotion:
    """The emotion in the speech: one probability vector per clip, or one per 2-second window held per frame."""
    if features.waveform.shape[-1] < 400:
        raise ValueError("the audio is shorter than 25 ms: too short to tell its emotion; choose one with the FLOAT Emotion node")
    encoder = _emotion_encoder(emotion_model)
    model = loaded.model.with_speech_networks(emotion_encoder=encoder)
    with working((encoder, emotion_model.placement)):
        if per_window:
            probabilities = emotion_per_window(model, features.waveform, features.features.shape[1])
        else:
            probabilities = predict_emotion(model, features.waveform)
    return Emotion(to_intermediate(probabilities.float()), model.config.emotion_labels)


def chosen_emotion(label: str, labels: tuple[str, ...]) -> Emotion:
    return Emotion(emotion_from_label(label, 1, labels), labels)


def _batch(**sizes: int) -> int:
    """The common batch: inputs of one item are repeated to the largest batch; other mismatches are errors."""
    batch = max(sizes.values())
    if set(sizes.values()) - {1, batch}:
        listed = ", ".join(f"{count} {name}" for name, count in sizes.items())
        raise ValueError(f"batch sizes do not match ({listed}): give one of each, or equal numbers")
    return batch


def sample(
    loaded: LoadedFloat,
    appearance: Appearance,
    features: AudioFeatures,
    emotion: Emotion,
    nfe: int,
    solver: str,
    audio_scale: float,
    emotion_scale: float,
    seed: int,
    official: bool,
) -> Motion:
    """Flow matching: motion latents for every frame of the audio, chunk by chunk, at the output frame rate."""
    model = loaded.model
    batch = _batch(portraits=appearance.batch, clips=features.batch, emotions=emotion.probabilities.shape[0])
    probabilities = emotion.probabilities
    if probabilities.dim() == 3 and probabilities.shape[1] != features.features.shape[1]:
        raise ValueError("the per-frame emotion was made for other audio than these audio features: connect the same audio to both")
    if probabilities.shape[-1] != model.config.fmt.emotion_dim:
        raise ValueError(f"the emotion has {probabilities.shape[-1]} classes, the model expects {model.config.fmt.emotion_dim}")
    reference = model.motion_latent(appearance.motion_coefficients).expand(batch, -1)
    audio = features.features.expand(batch, -1, -1)
    probabilities = probabilities.expand(batch, *probabilities.shape[1:])
    progress = Progress(1)

    def report(step: SamplingProgress) -> None:
        if step.chunk_motion is None:
            progress(step.evaluations_done, step.evaluations_total)

    with working((model.fmt, loaded.placement)):
        chunks = iter_sample_motion(
            model, audio, reference, probabilities, nfe=nfe, solver=solver, audio_scale=audio_scale,
            emotion_scale=emotion_scale, seed=seed, official=official, callback=report,
        )  # fmt: skip
        latents = torch.cat([to_intermediate(chunk) for chunk in chunks], dim=1)
    if features.fps != model.config.fps:
        latents = resample_motion(latents, features.seconds, features.fps, model.config.fps)
    return Motion(latents, features.fps)


def decode(loaded: LoadedFloat, appearance: Appearance, motion: Motion, batch_size: int) -> Tensor:
    """Motion latents -> IMAGE frames (B * frames, H, W, 3), decoded `batch_size` frames at a time."""
    model = loaded.model
    batch = _batch(portraits=appearance.batch, motions=motion.latents.shape[0])
    identity = appearance.identity_latent.expand(batch, -1)
    features = [f.expand(batch, *f.shape[1:]) for f in appearance.features]
    latents = motion.latents.expand(batch, -1, -1)
    size = model.config.motion_autoencoder.image_size
    total = batch * latents.shape[1]
    # Filled in place as batches arrive: the frames are never held twice.
    images = torch.empty(total, size, size, 3, dtype=torch.float32, device=to_intermediate(latents).device)
    progress = Progress(total)
    done = 0
    with working((model.motion_autoencoder, loaded.placement)):
        for frames in model.iter_decode(identity, features, latents, batch_size):
            images[done : done + frames.shape[0]] = frames_to_images(frames).to(images.device)
            done += frames.shape[0]
            progress(done)
    return images
