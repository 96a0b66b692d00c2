"""Training configuration: dataclasses, read from YAML, overridden by `key=value` arguments, saved beside
every checkpoint.

    config = load_config(FMTTrainConfig, "training/configs/fmt_paper.yaml", ["optim.lr=2e-5", "run.steps=100"])

Sizes of the networks are FMTConfig's (float_model.config), so a trained model is built exactly as
float_model builds it at inference.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from float_model.config import FMTConfig, MotionAutoEncoderConfig

C = TypeVar("C")


@dataclass
class DataConfig:
    # Made by `python -m training.cache_fmt`. Windows are model.num_prev_frames clean context frames (the
    # previous chunk at inference) followed by model.num_frames frames that are noised and learned.
    cache: str = "cache"


@dataclass
class FlowConfig:
    sigma_min: float = 0.0  # straight path x_t = (1 - (1 - sigma_min) t) x0 + t x1
    time_sampler: str = "uniform"  # uniform | logit_normal
    velocity_weight: float = 1.0  # weight of the loss on one-frame differences (paper: 1)
    # Per-sample condition dropout, zeros as the null condition (the official values).
    drop_audio: float = 0.1
    drop_reference: float = 0.1
    drop_emotion: float = 0.1
    drop_context_motion: float = 0.5
    drop_context_audio: float = 0.5


@dataclass
class OptimConfig:
    lr: float = 1e-5  # paper
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0  # the official max_grad_norm
    ema_decay: float = 0.9999


@dataclass
class RunConfig:
    out_dir: str = "runs/fmt"
    steps: int = 2_000_000  # paper: about 2M steps
    batch_size: int = 8  # global batch, split evenly between processes (paper: 8)
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | fp32 | bf16 | fp16
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    init_from: str = ""  # a FLOAT checkpoint to fine-tune from; empty: train from scratch
    tensorboard: bool = True  # when tensorboard is installed


@dataclass
class FMTTrainConfig:
    model: FMTConfig = field(default_factory=FMTConfig)
    data: DataConfig = field(default_factory=DataConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


@dataclass
class ClipsConfig:
    clips: str = "clips"  # prepared clips (python -m training.prepare): <name>.mp4, .wav, .boxes.json
    num_workers: int = 4  # processes decoding frames for the next batches


@dataclass
class AELossConfig:
    """Phase 1's loss weights, as in the paper."""

    l1: float = 1.0
    perceptual: float = 10.0  # VGG-19 at 4 image scales
    component_perceptual: float = 100.0  # VGG-19 features masked to eyes and mouth at 4 feature scales
    adversarial: float = 1.0  # non-saturating, 2-scale discriminator
    eye_adversarial: float = 1.0
    eye_style: float = 100.0  # Gram-matrix feature-style matching on the eye discriminator's features
    lip_adversarial: float = 1.0
    lip_style: float = 100.0
    vgg: str = "download"  # a vgg19 .pth file (torchvision's layout), "download", or "random" (tests only)
    eye_crop: int = 80  # component crop sizes at 512 px, scaled with the image size
    lip_crop: int = 120


@dataclass
class AETrainConfig:
    model: MotionAutoEncoderConfig = field(default_factory=MotionAutoEncoderConfig)
    data: ClipsConfig = field(default_factory=ClipsConfig)
    loss: AELossConfig = field(default_factory=AELossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, betas=(0.0, 0.99), grad_clip=0.0, ema_decay=0.999))
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/ae", steps=460_000, checkpoint_every=5000))


def _build(cls: type[C], values: dict[str, Any], where: str) -> C:
    """A dataclass from a (nested) dict, refusing unknown keys so that a typo is not silently ignored."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(sorted(f'{where}{k}' for k in unknown))}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value or {}, f"{where}{name}.")
        elif typing.get_origin(kind) is tuple:
            kwargs[name] = tuple(float(v) for v in value)
        elif kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            # YAML reads 1e-5 (no dot) as text; a float setting takes it as the number it means.
            try:
                kwargs[name] = float(value)
            except ValueError:
                raise ValueError(f"setting {where}{name} must be a number, got {value!r}") from None
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    """A command-line value as YAML reads it: 1e-5, 8, true, [0.9, 0.99], text."""
    return yaml.safe_load(text)


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] = ()) -> C:
    """The defaults, then the YAML file, then `section.key=value` overrides, in that order."""
    values: dict[str, Any] = {}
    if path is not None:
        values = yaml.safe_load(Path(path).read_text()) or {}
    for override in overrides:
        key, separator, text = override.partition("=")
        if not separator:
            raise ValueError(f"override {override!r} is not key=value (e.g. optim.lr=2e-5)")
        *sections, name = key.strip().split(".")
        target = values
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = _parse_value(text)
    return _build(cls, values, "")


def config_to_dict(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
