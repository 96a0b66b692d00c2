"""Command line: `python -m float_model generate | download | convert | demo`."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .audio import normalize_waveform
from .checkpoint import CheckpointError, convert_checkpoint, load_float_model
from .config import EMOTIONS, FloatConfig
from .crop_box import CropBox
from .download import DownloadError, download_models, missing_model_files
from .media import MediaError
from .sampling import pad_frames

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _timed(label: str, fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    print(f"{label:<34} {time.perf_counter() - start:7.2f} s", end="")
    return result


def demo(models: Path | None, device: str, dtype: torch.dtype, seconds: float) -> None:
    """Load FLOAT (synthesising a full-size random checkpoint in the released layout when no folder is
    given) and run every inference stage once, printing shapes and times."""
    with tempfile.TemporaryDirectory() as scratch:
        if models is None:
            from .synthetic import write_official_layout

            models = Path(scratch)
            _timed("synthesise full-size checkpoint", write_official_layout, models, FloatConfig())
            print(f"  -> {models} (random weights, released layout)")
        model = _timed("load", load_float_model, models, device=device, dtype=dtype)
        params = sum(p.numel() for p in model.parameters())
        print(f"  -> {params / 1e6:.1f} M parameters, {dtype}, {device}")

        generator = torch.Generator().manual_seed(0)
        size = model.config.motion_autoencoder.image_size
        image = torch.rand(1, 3, size, size, generator=generator) * 2 - 1
        encoded = _timed("encode image", model.encode_image, image)
        print(f"  -> identity latent {tuple(encoded.identity_latent.shape)}, motion coefficients "
              f"{tuple(encoded.motion_coefficients.shape)}, {len(encoded.features)} feature maps "
              f"{encoded.features[0].shape[-1]}..{encoded.features[-1].shape[-1]} px")  # fmt: skip
        reference = _timed("motion basis -> reference motion", model.motion_latent, encoded.motion_coefficients)
        print(f"  -> basis {tuple(model.motion_basis().shape)}, reference motion {tuple(reference.shape)}")

        num_samples = int(seconds * model.config.sample_rate)
        frames = math.ceil(num_samples * model.config.fps / model.config.sample_rate)
        waveform = normalize_waveform(torch.randn(1, num_samples, generator=generator))
        audio = _timed(f"audio features ({seconds:g} s)", model.audio_features, waveform, frames)
        print(f"  -> {tuple(audio.shape)}")
        if model.emotion_encoder is not None:
            emotion = _timed("emotion from speech", model.emotion, waveform)
            labels = model.config.emotion_labels
            print(f"  -> {tuple(emotion.shape)}, top: {labels[int(emotion.argmax())]}")
        else:
            emotion = torch.nn.functional.one_hot(torch.tensor([4]), model.config.fmt.emotion_dim).float()
            print("emotion model not loaded: using 'neutral'")

        fmt = model.config.fmt
        chunk = pad_frames(audio[:, : fmt.num_frames], fmt.num_frames)
        noise = torch.randn(1, fmt.num_frames, fmt.motion_dim, generator=generator)
        context_motion = torch.zeros(1, fmt.num_prev_frames, fmt.motion_dim)
        context_audio = torch.zeros(1, fmt.num_prev_frames, fmt.audio_dim)
        with torch.no_grad():
            velocity = _timed("vector field (guided, 3 branches)", model.vector_field, 0.0, noise, chunk, reference, emotion, context_motion, context_audio)
        print(f"  -> {tuple(velocity.shape)}")

        motion = reference[:, None] + 0.1 * torch.randn(1, 2, fmt.motion_dim, generator=generator)
        images = _timed("decode 2 frames", model.decode, encoded.identity_latent, encoded.features, motion)
        print(f"  -> {tuple(images.shape)}, range [{images.min().item():.2f}, {images.max().item():.2f}] (raw)")


def default_models_folder() -> Path:
    return Path(os.environ.get("FLOAT_MODELS", "models/float"))


def ensure_models(folder: Path, emotion: bool) -> None:
    """Download what the folder lacks; a single-file FLOAT.safetensors needs nothing beside it."""
    if (folder / "FLOAT.safetensors").is_file():
        return
    has_float = any((folder / name).is_file() for name in ("float.safetensors", "float.pth"))
    missing = [path for path in missing_model_files(folder, emotion=emotion) if not (has_float and path == "float.pth")]
    if not missing:
        return
    print(f"FLOAT model files missing in {folder}: downloading {', '.join(missing)}", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    download_models(folder, emotion=emotion)


def _print_progress(stage: str, done: int, total: int) -> None:
    print(f"\r{stage}: {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def portrait_and_box(picture: np.ndarray, args: argparse.Namespace, size: int) -> tuple[np.ndarray, CropBox]:
    """The crop the model animates, and where it sits in the picture."""
    from .face import S3FDDetector, YuNetDetector, centre_box, crop_portrait, cut_crop

    if args.crop == "centre":
        box = centre_box(picture.shape[1], picture.shape[0])
        return cut_crop(picture, box, size), box
    if args.detector == "s3fd":
        if args.s3fd_weights is None:
            raise ValueError("--detector s3fd needs --s3fd-weights PATH (face-alignment's s3fd-619a316812.pth)")
        detector = S3FDDetector(args.s3fd_weights, device=args.device)
    else:
        detector = YuNetDetector()
    if_no_face = "centre" if args.crop == "face-or-centre" else "error"
    return crop_portrait(picture, size, detector=detector, which=args.face, index=args.face_index, if_no_face=if_no_face)


def generate(args: argparse.Namespace) -> None:
    from .media import load_audio, load_image
    from .paste import paste_back
    from .pipeline import GenerationSettings, animate, frames_to_images, image_to_model
    from .video import write_video

    chosen_emotion = args.emotion not in ("predict", "per-window")
    with tempfile.TemporaryDirectory() as scratch:
        if args.synthetic_weights:
            from .synthetic import write_official_layout

            print("writing random weights in the released layout (the video will not show a face)", file=sys.stderr)
            models = write_official_layout(Path(scratch), FloatConfig())
        else:
            models = args.models
            ensure_models(models, emotion=not chosen_emotion)
        # A chosen emotion needs no speech-emotion model: skip its 1.27 GB.
        model = load_float_model(models, emotion_encoder=False if chosen_emotion else None, device=args.device, dtype=DTYPES[args.dtype])
        picture = load_image(args.image)
        crop, box = portrait_and_box(picture, args, model.config.motion_autoencoder.image_size)
        audio, sample_rate = load_audio(args.audio)
        settings = GenerationSettings(
            nfe=args.nfe, solver=args.solver, audio_scale=args.a_cfg, emotion_scale=args.e_cfg, seed=args.seed,
            emotion=args.emotion, fps=args.fps, official=args.official, decode_batch_size=args.decode_batch,
            offload=args.offload, compile=args.compile,
        )  # fmt: skip
        start = time.perf_counter()
        frames, count = animate(model, image_to_model(crop), audio, sample_rate, settings, progress=_print_progress)
        if args.paste_back:
            original = torch.from_numpy(picture)[None].float() / 255
            # H.264 (yuv420p) needs even sides: an odd last row or column of the photo is dropped.
            even_h, even_w = picture.shape[0] // 2 * 2, picture.shape[1] // 2 * 2
            frames = (
                paste_back(frames_to_images(batch), original, box, feather=args.feather, color_match=not args.no_color_match)[0][:, :even_h, :even_w]
                .mul(255).to(torch.uint8)
                for batch in frames
            )
        write_video(args.out, frames, args.fps, audio=audio, sample_rate=sample_rate)
        print(f"wrote {args.out}: {count} frames at {args.fps:g} fps in {time.perf_counter() - start:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m float_model", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="animate a portrait with speech into an mp4")
    gen.add_argument("--image", type=Path, required=True, help="portrait photo (any format Pillow reads)")
    gen.add_argument("--audio", type=Path, required=True, help="speech (any format FFmpeg reads, any rate and channels)")
    gen.add_argument("--out", type=Path, required=True, help="output .mp4")
    gen.add_argument("--models", type=Path, default=default_models_folder(), help="model folder (default: $FLOAT_MODELS or models/float); missing files are downloaded")
    gen.add_argument("--synthetic-weights", action="store_true", help="random weights instead of the released ones: try the pipeline without downloading")
    gen.add_argument("--crop", choices=["face", "face-or-centre", "centre"], default="face", help="crop around the detected face (the official framing), fall back to the centred square, or always take the centred square")
    gen.add_argument("--face", choices=["largest", "best", "left-to-right"], default="largest", help="which face when there are several (best: highest score, the official choice)")
    gen.add_argument("--face-index", type=int, default=0, help="with --face left-to-right: 0 is the leftmost face")
    gen.add_argument("--detector", choices=["yunet", "s3fd"], default="yunet", help="yunet ships with the package; s3fd is the official one (pip install face-alignment, and --s3fd-weights)")
    gen.add_argument("--s3fd-weights", type=Path, help="face-alignment's s3fd-619a316812.pth")
    gen.add_argument("--paste-back", action="store_true", help="write the animated face back into the whole original photo")
    gen.add_argument("--feather", type=float, default=0.1, help="paste-back: soft edge, as a fraction of the crop's side")
    gen.add_argument("--no-color-match", action="store_true", help="paste-back: keep the generated face's colours")
    gen.add_argument("--seed", type=int, default=None, help="noise seed (default: random)")
    gen.add_argument("--nfe", type=int, default=10, help="vector-field evaluations per 2 s chunk (official mode: time-grid points)")
    gen.add_argument("--solver", choices=["euler", "midpoint", "rk4"], default="euler")
    gen.add_argument("--emotion", default="predict", choices=["predict", "per-window", *EMOTIONS], help="predicted from speech (for the clip or every 2 s), or chosen")
    gen.add_argument("--a-cfg", type=float, default=2.0, help="audio guidance scale")
    gen.add_argument("--e-cfg", type=float, default=1.0, help="emotion guidance scale")
    gen.add_argument("--fps", type=float, default=25.0, help="output frame rate; motion is sampled at 25 fps and resampled")
    gen.add_argument("--decode-batch", type=int, default=1, help="frames decoded per call (larger pays off on GPUs)")
    gen.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    gen.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    gen.add_argument("--compile", action="store_true", help="torch.compile the FMT and the decoder (CUDA graphs on GPUs); the first chunk and frame batch are slow")
    gen.add_argument("--offload", action="store_true", help="on a GPU, keep the speech networks on the CPU except while they run")
    gen.add_argument("--official", action="store_true", help="reproduce the official sampler exactly (time grid, per-chunk seed, one-pass audio)")

    down = commands.add_parser("download", help="download the released FLOAT files")
    down.add_argument("--models", type=Path, default=default_models_folder(), help="destination folder (default: $FLOAT_MODELS or models/float)")
    down.add_argument("--variant", choices=["float.pth", "FLOAT.safetensors"], default="float.pth")
    down.add_argument("--no-emotion", action="store_true", help="skip the 1.27 GB speech-emotion model (emotion must then be chosen)")

    convert = commands.add_parser("convert", help="float.pth (or any accepted checkpoint) -> safetensors with its configuration")
    convert.add_argument("source", type=Path)
    convert.add_argument("destination", type=Path)
    convert.add_argument("--include-hf-folders", action="store_true", help="fold the wav2vec2 and emotion folders in: one self-contained file")

    run = commands.add_parser("demo", help="run every stage once and print shapes and times")
    run.add_argument("--models", type=Path, help="a FLOAT model folder or file (default: synthesise random weights)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    run.add_argument("--seconds", type=float, default=2.58, help="length of the random test audio")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "generate":
            generate(args)
        elif args.command == "download":
            download_models(args.models, variant=args.variant, emotion=not args.no_emotion)
            print(f"FLOAT models ready in {args.models}")
        elif args.command == "demo":
            demo(args.models, args.device, DTYPES[args.dtype], args.seconds)
        else:
            config = convert_checkpoint(args.source, args.destination, args.include_hf_folders)
            print(f"wrote {args.destination} (image {config.motion_autoencoder.image_size} px, FMT depth {config.fmt.depth})")
    except (CheckpointError, DownloadError, MediaError, ValueError, ImportError) as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncancelled", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
