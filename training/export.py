"""Export a training run as a FLOAT checkpoint that float_model (and the ComfyUI nodes) load.

    python -m training.export runs/ae  --base models/float/float.pth --out models/float/float_ae.safetensors
    python -m training.export runs/fmt --base models/float/float_ae.safetensors --out models/float/float_tuned.safetensors

The trained networks (EMA weights by default) replace theirs in the base checkpoint: a phase-1 run the
motion auto-encoder, a phase-2 run the flow-matching transformer and audio projection. The result is one
safetensors file with its configuration in the metadata; put it beside the wav2vec2 and emotion folders,
as float.pth. Without --base only the trained networks are written, loadable together with a base file:
`load_float_model([base, exported])`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from float_model.checkpoint import collect_checkpoint, find_checkpoint_files, save_checkpoint
from float_model.config import FloatConfig, FMTConfig, MotionAutoEncoderConfig

from .state import latest_checkpoint, load_checkpoint


def _run_state(run: Path) -> dict:
    path = run if run.is_file() else latest_checkpoint(run / "checkpoints")
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {run / 'checkpoints'}: train first")
    return load_checkpoint(path)


def trained_tensors(run: Path, use_ema: bool = True) -> tuple[dict[str, torch.Tensor], FloatConfig, tuple[str, ...]]:
    """The trained networks of a run's newest checkpoint (or of a checkpoint file) under FLOAT's key names,
    the configuration they imply, and the key prefixes they replace in a base checkpoint.

    Phase 1 runs hold the motion auto-encoder; phase 2 runs the FMT and the audio projection."""
    state = _run_state(run)
    weights = state["model"]
    if use_ema:
        weights = {name: state["ema"]["shadow"].get(name, value).to(value.dtype) for name, value in weights.items()}
    if "critics" in state:  # phase 1
        autoencoder = MotionAutoEncoderConfig(**state["config"]["model"])
        tensors = {"motion_autoencoder." + name.removeprefix("autoencoder."): value.contiguous() for name, value in weights.items()}
        config = FloatConfig(motion_autoencoder=autoencoder, fmt=FMTConfig(motion_dim=autoencoder.latent_dim))
        return tensors, config, ("motion_autoencoder.",)
    fmt = FMTConfig(**state["config"]["model"])
    tensors = {("audio_encoder." if name.startswith("audio_projection.") else "") + name: value.contiguous() for name, value in weights.items()}
    config = FloatConfig(fmt=fmt, motion_autoencoder=dataclasses.replace(FloatConfig().motion_autoencoder, latent_dim=fmt.motion_dim))
    return tensors, config, ("fmt.", "audio_encoder.audio_projection.")


def export(run: Path, out: Path, base: Path | None = None, use_ema: bool = True) -> Path:
    tensors, config, replaced = trained_tensors(run, use_ema)
    if base is None:
        save_checkpoint(tensors, config, out)
        return out
    collected = collect_checkpoint(find_checkpoint_files(base, emotion_encoder=False), hf_weights=False)
    if collected.config.fmt.motion_dim != config.fmt.motion_dim:
        raise ValueError(f"the base checkpoint's motion latents are {collected.config.fmt.motion_dim} wide, the trained network's {config.fmt.motion_dim}")
    kept = {name: value for name, value in collected.tensors.items() if not name.startswith(replaced)}
    if replaced == ("motion_autoencoder.",):
        merged = dataclasses.replace(collected.config, motion_autoencoder=config.motion_autoencoder)
    else:
        merged = dataclasses.replace(collected.config, fmt=config.fmt)
    save_checkpoint(kept | tensors, merged, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export a phase-1 or phase-2 run as a FLOAT checkpoint (safetensors).")
    parser.add_argument("run", type=Path, help="the run folder (its newest checkpoint) or one checkpoint file")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    parser.add_argument("--base", type=Path, help="the FLOAT checkpoint whose motion auto-encoder to keep (float.pth or a folder)")
    parser.add_argument("--raw", action="store_true", help="the last trained weights instead of their EMA")
    args = parser.parse_args(argv)
    print(f"wrote {export(args.run, args.out, args.base, use_ema=not args.raw)}")


if __name__ == "__main__":
    main()
