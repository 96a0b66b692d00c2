"""One function per FLOAT stage, shared by the step-by-step nodes and the all-in-one node.

Each takes graph values (nodes/types.py) and ComfyUI data (IMAGE, AUDIO), puts the networks it needs on
their device for the call, reports progress, honours Cancel, and returns a new graph value. The model
work itself is float_model's; nothing here computes what float_model already does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr
import torch
from torch import Tensor

from ..float_model.checkpoint import load_emotion_encoder
from ..float_model.driving import (
    blend_motion,
    split_by_frequency,
    track_face,
    video_motion,
)
from ..float_model.face import MARGIN, YuNetDetector, as_rgb, cut_crop, find_crop, resize_square
from ..float_model.motion import (
    damp_motion,
    edit_motion,
    resample_motion,
    smooth_motion,
)
from ..float_model.paste import paste_back
from ..float_model.pipeline import frames_to_images, image_to_model
from ..float_model.sampling import SamplingProgress, iter_sample_motion
from ..float_model.speech import (
    SAMPLE_RATE,
    emotion_from_label,
    emotion_per_window,
    emotion_schedule,
    encode_audio,
    predict_emotion,
    prepare_audio,
)
from ..float_model.video import write_video
from .runtime import Progress, intermediate_device, locate_or_download, to_intermediate, working
from .types import (
    Appearance,
    AudioFeatures,
    Crops,
    Emotion,
    LazyEmotionModel,
    LoadedAudioEncoder,
    LoadedFloat,
    Motion,
)

CROP_SIZE = 512
DETECTION_THRESHOLD = 0.6


# --- Portraits -----------------------------------------------------------------------------------------------------


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
    pictures = [resize_square(picture, size) for picture in pictures]
    autoencoder = loaded.model.motion_autoencoder
    with working((autoencoder, loaded.placement)):
        encoded = loaded.model.encode_image(image_to_model(np.stack(pictures)))
    return Appearance(
        identity_latent=to_intermediate(encoded.identity_latent),
        features=tuple(to_intermediate(f) for f in encoded.features),
        motion_coefficients=to_intermediate(encoded.motion_coefficients),
    )


# --- Speech --------------------------------------------------------------------------------------------------------


def trim_audio(audio: dict, seconds: float) -> dict:
    """The first `seconds` of an AUDIO (0 keeps it whole): a preview costs a fraction of the full run."""
    if seconds <= 0:
        return audio
    keep = max(1, round(seconds * int(audio["sample_rate"])))
    return {**audio, "waveform": audio["waveform"][..., :keep]}


def batch_audio(clips: list[dict]) -> dict:
    """Several AUDIO clips -> one AUDIO batch, one clip per portrait: resampled to the first clip's rate (soxr),
    mono clips repeated to the widest channel count, shorter clips padded with silence at the end."""
    rate = int(clips[0]["sample_rate"])
    channels = max(clip["waveform"].shape[1] for clip in clips)
    waves = []
    for clip in clips:
        for item in clip["waveform"]:
            wave = item.float().cpu()
            if int(clip["sample_rate"]) != rate:
                wave = torch.from_numpy(np.ascontiguousarray(soxr.resample(wave.T.numpy(), int(clip["sample_rate"]), rate, quality="HQ").T))
            if wave.shape[0] != channels:
                if wave.shape[0] != 1:
                    raise ValueError(f"cannot batch a {wave.shape[0]}-channel clip with {channels}-channel ones: make them mono or stereo alike")
                wave = wave.expand(channels, -1)
            waves.append(wave)
    length = max(wave.shape[-1] for wave in waves)
    return {"waveform": torch.stack([torch.nn.functional.pad(wave, (0, length - wave.shape[-1])) for wave in waves]), "sample_rate": rate}


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


# --- Emotion -------------------------------------------------------------------------------------------------------


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


def emotion_keyframes(features: AudioFeatures, keyframes: list[tuple[float, str]], labels: tuple[str, ...]) -> Emotion:
    """Emotion that changes over the clip: labels at times, blended linearly in between, one per 25 fps frame."""
    frames = features.features.shape[1]
    return Emotion(emotion_schedule(keyframes, frames, features.batch, 25.0, labels), labels)


# --- Motion --------------------------------------------------------------------------------------------------------


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
    return Motion(latents, features.fps, features.seconds)


def edit(loaded: LoadedFloat, appearance: Appearance, motion: Motion, movement: float, smoothing: float, scales: Tensor | None, offsets: Tensor | None) -> Motion:
    """Motion edited in FLOAT's latent space: motion-basis coefficients scaled and offset (lambda editing),
    movement around the portrait's own pose damped or exaggerated, then smoothed over time."""
    model = loaded.model
    latents = motion.latents.float()
    if scales is not None or offsets is not None:
        latents = edit_motion(latents, model.motion_basis().float().to(latents.device), scales, offsets)
    if movement != 1.0:
        reference = model.motion_latent(appearance.motion_coefficients).float().to(latents.device)
        latents = damp_motion(latents, reference.expand(latents.shape[0], -1), movement)
    latents = smooth_motion(latents, smoothing * motion.fps)
    return Motion(latents, motion.fps, motion.seconds)


def resample(motion: Motion, fps: float) -> Motion:
    """The same motion at another frame rate, as many frames as the audio lasts."""
    return Motion(resample_motion(motion.latents, motion.seconds, fps, motion.fps), fps, motion.seconds)


def driving_motion(loaded: LoadedFloat, appearance: Appearance, video: Tensor, fps: float, smoothing: float) -> Motion:
    """Video frames (IMAGE) of a face -> the motion that makes the portrait move like it, frame 0 being the
    portrait's own pose. The face is tracked (YuNet) and its crop square smoothed over `smoothing` seconds."""
    if appearance.batch != 1:
        raise ValueError(f"video motion drives one portrait; {appearance.batch} are connected")
    model = loaded.model
    pictures = image_batch_to_uint8(video)
    boxes = track_face(pictures, YuNetDetector(), smoothing=smoothing * fps)
    reference = model.motion_latent(appearance.motion_coefficients)
    with working((model.motion_autoencoder, loaded.placement)):
        latents = video_motion(model, pictures, reference, boxes)
    return Motion(to_intermediate(latents), float(fps), len(pictures) / fps)


def _match_length(motion: Motion, target: Motion) -> Tensor:
    """`motion` at `target`'s frame rate and length: resampled, then cut or held on its last frame."""
    latents = resample_motion(motion.latents, motion.seconds, target.fps, motion.fps)
    frames = target.latents.shape[1]
    if latents.shape[1] < frames:
        latents = torch.cat([latents, latents[:, -1:].expand(-1, frames - latents.shape[1], -1)], dim=1)
    return latents[:, :frames].expand(target.batch, -1, -1)


def blend(loaded: LoadedFloat, audio_motion: Motion, video_driven: Motion, mode: str, audio_weight: float, split_seconds: float, directions: list[int]) -> Motion:
    """Audio-driven and video-driven motion combined, on the audio motion's frames:
    "split": slow movement (head) from the video, quick movement (lips) from the audio;
    "mix": audio_weight x audio + (1 - audio_weight) x video;
    "directions": the chosen motion-basis directions from the audio, the others from the video."""
    video = _match_length(video_driven, audio_motion)
    audio = audio_motion.latents
    if mode == "split":
        latents = split_by_frequency(audio, video, split_seconds * audio_motion.fps)
    elif mode == "mix":
        latents = blend_motion(audio, video, audio_weight)
    else:
        basis = loaded.model.motion_basis().float()
        weight = torch.zeros(basis.shape[1])
        weight[directions] = 1.0
        latents = blend_motion(audio, video, weight, basis)
    return Motion(latents, audio_motion.fps, audio_motion.seconds)


# --- Frames --------------------------------------------------------------------------------------------------------


def decode(loaded: LoadedFloat, appearance: Appearance, motion: Motion, batch_size: int, every_nth_frame: int = 1) -> tuple[Tensor, float]:
    """Motion latents -> IMAGE frames (B * frames, H, W, 3) and their frame rate, decoded `batch_size` frames
    at a time. `every_nth_frame` > 1 renders a quick preview: every n-th frame, at 1/n of the frame rate."""
    model = loaded.model
    batch = _batch(portraits=appearance.batch, motions=motion.batch)
    identity = appearance.identity_latent.expand(batch, -1)
    features = [f.expand(batch, *f.shape[1:]) for f in appearance.features]
    latents = motion.latents[:, ::every_nth_frame].expand(batch, -1, -1)
    size = model.config.motion_autoencoder.image_size
    total = batch * latents.shape[1]
    # Filled in place as batches arrive: the frames are never held twice.
    images = torch.empty(total, size, size, 3, dtype=torch.float32, device=intermediate_device())
    progress = Progress(total)
    done = 0
    with working((model.motion_autoencoder, loaded.placement)):
        for frames in model.iter_decode(identity, features, latents, batch_size):
            images[done : done + frames.shape[0]] = frames_to_images(frames).to(images.device)
            done += frames.shape[0]
            progress(done)
    return images, motion.fps / every_nth_frame


def decode_to_files(
    loaded: LoadedFloat,
    appearance: Appearance,
    motion: Motion,
    audio: dict | None,
    paths: list[Path],
    batch_size: int,
    crf: int,
    paste: tuple[Crops, Tensor] | None = None,
    feather: float = 0.1,
) -> list[Path]:
    """Decode straight into one mp4 per portrait, with its audio clip: frames go to the encoder batch by
    batch, so RAM and VRAM stay flat for any length. With `paste` (crops, originals) each frame is first
    pasted back into its picture. Cancel deletes the file being written."""
    model = loaded.model
    batch = _batch(portraits=appearance.batch, motions=motion.batch)
    if len(paths) != batch:
        raise ValueError(f"{batch} videos to write but {len(paths)} file names")
    waveform, rate = (audio["waveform"], int(audio["sample_rate"])) if audio is not None else (None, None)
    if waveform is not None:
        _batch(portraits=batch, clips=waveform.shape[0])
    frames_per_video = motion.latents.shape[1]
    progress = Progress(batch * frames_per_video)

    def frames(item: int) -> Iterator[Tensor]:
        """Portrait `item`'s frames as uint8 batches, decoded (and pasted back) as the encoder asks for them."""
        source = min(item, appearance.batch - 1)
        identity = appearance.identity_latent[source : source + 1]
        features = [f[source : source + 1] for f in appearance.features]
        done = 0
        for raw in model.iter_decode(identity, features, motion.latents[min(item, motion.batch - 1)][None], batch_size):
            images = frames_to_images(raw)
            if paste is not None:
                images = _paste(images, *paste, portrait=item, first_frame=done, feather=feather)[0]
                images = images[:, : images.shape[1] // 2 * 2, : images.shape[2] // 2 * 2]  # H.264 needs even sizes
            done += images.shape[0]
            progress(item * frames_per_video + done)
            yield (images * 255).round().to(torch.uint8).cpu()

    written = []
    with working((model.motion_autoencoder, loaded.placement)):
        for item, path in enumerate(paths):
            clip = waveform[min(item, waveform.shape[0] - 1)].float().cpu() if waveform is not None else None
            written.append(write_video(path, frames(item), motion.fps, clip, rate, crf))
    return written


def _paste(
    frames: Tensor, crops: Crops, originals: Tensor, portrait: int, first_frame: int, feather: float, color_match: bool = True, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Paste frames [first_frame, first_frame + n) of one portrait's animation into its picture: the photo it
    was cropped from (one original per portrait), or the matching frames of a video (one portrait, many
    originals; the last one is held when the animation is longer)."""
    portraits = len(crops.boxes)
    box = crops.boxes[portrait]
    if originals.shape[0] == portraits:
        pictures = originals[portrait : portrait + 1]
    elif portraits == 1:
        index = torch.arange(first_frame, first_frame + frames.shape[0]).clamp(max=originals.shape[0] - 1)
        pictures = originals[index]
    else:
        raise ValueError(f"{originals.shape[0]} original pictures for {portraits} portraits: give one picture per portrait")
    return paste_back(frames, pictures[..., :3], box, feather=feather, mask=mask, color_match=color_match)


def paste_frames(frames: Tensor, crops: Crops, originals: Tensor, feather: float, color_match: bool, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Animated crops (IMAGE, all frames of portrait 1, then portrait 2 ...) -> the original pictures with the
    animation pasted in (IMAGE at the originals' resolution) and the blend mask of each portrait (MASK)."""
    portraits = len(crops.boxes)
    if frames.shape[0] % portraits:
        raise ValueError(f"{frames.shape[0]} frames cannot be split evenly between {portraits} portraits: connect the frames decoded from these crops")
    sizes = {(box.image_height, box.image_width) for box in crops.boxes}
    if len(sizes) > 1:
        raise ValueError("the portraits come from pictures of different sizes: paste them back one by one")
    per_portrait = frames.shape[0] // portraits
    (height, width), chunk = sizes.pop(), 16  # chunks bound the float32 working copies of full-size pictures
    # Filled in place, chunk by chunk: the pasted frames are never held twice.
    pasted = torch.empty(frames.shape[0], height, width, 3, dtype=torch.float32, device=intermediate_device())
    progress = Progress(frames.shape[0])
    masks = []
    for portrait in range(portraits):
        for start in range(0, per_portrait, chunk):
            first = portrait * per_portrait + start
            block = frames[first : portrait * per_portrait + min(start + chunk, per_portrait)]
            composite, placed = _paste(block, crops, originals, portrait, start, feather, color_match, mask)
            pasted[first : first + block.shape[0]] = composite.to(pasted.device)
            progress(first + block.shape[0])
        masks.append(placed if placed.dim() == 2 else placed[0])
    return pasted, to_intermediate(torch.stack(masks))
