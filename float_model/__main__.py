"""Command line: `python -m float_model demo | convert`."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from .audio import normalize_waveform
from .checkpoint import CheckpointError, convert_checkpoint, load_float_model
from .config import FloatConfig

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
        image = torch.rand(1, 3, 512, 512, generator=generator) * 2 - 1
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
        chunk = audio[:, : fmt.num_frames]
        if chunk.shape[1] < fmt.num_frames:
            chunk = torch.cat([chunk, chunk[:, -1:].expand(-1, fmt.num_frames - chunk.shape[1], -1)], dim=1)
        noise = torch.randn(1, fmt.num_frames, fmt.motion_dim, generator=generator)
        context = torch.zeros(1, fmt.num_prev_frames, fmt.motion_dim)
        with torch.no_grad():
            velocity = _timed("vector field (guided, 3 branches)", model.vector_field, 0.0, noise, chunk, reference, emotion, context, context)
        print(f"  -> {tuple(velocity.shape)}")

        motion = reference[:, None] + 0.1 * torch.randn(1, 2, fmt.motion_dim, generator=generator)
        images = _timed("decode 2 frames", model.decode, encoded.identity_latent, encoded.features, motion)
        print(f"  -> {tuple(images.shape)}, range [{images.min().item():.2f}, {images.max().item():.2f}] (raw)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m float_model", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("demo", help="run every stage once and print shapes and times")
    run.add_argument("--models", type=Path, help="a FLOAT model folder or file (default: synthesise random weights)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    run.add_argument("--seconds", type=float, default=2.58, help="length of the random test audio")

    convert = commands.add_parser("convert", help="float.pth (or any accepted checkpoint) -> safetensors with its configuration")
    convert.add_argument("source", type=Path)
    convert.add_argument("destination", type=Path)
    convert.add_argument("--include-hf-folders", action="store_true", help="fold the wav2vec2 and emotion folders in: one self-contained file")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            demo(args.models, args.device, DTYPES[args.dtype], args.seconds)
        else:
            config = convert_checkpoint(args.source, args.destination, args.include_hf_folders)
            print(f"wrote {args.destination} (image {config.motion_autoencoder.image_size} px, FMT depth {config.fmt.depth})")
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
