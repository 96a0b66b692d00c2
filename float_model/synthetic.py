"""Random FLOAT weights written in the released files' exact layout.

For trying the whole pipeline and testing the real loading code without downloading 2.5 GB: the
model folder it writes has the same file names, key names (dead weights included), HuggingFace
folder structure and weight-norm spelling as the released checkpoint, only with random values.
The outputs of such a model are noise-driven, not faces.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import safetensors.torch
import torch
from torch import Tensor

from .config import AUDIO_MODEL_NAME, EMOTION_MODEL_NAME, FloatConfig
from .model import FloatModel
from .motion_autoencoder import Blur, Upsample, blur_kernel
from .fmt import attention_band
from .checkpoint import legacy_weight_norm_names


def random_weights(config: FloatConfig, seed: int = 0) -> dict[str, Tensor]:
    """A FloatModel state dict with random values (canonical keys, legacy weight-norm names).

    Parameters a fresh model initialises to a constant (biases, LayerNorm gains) get a little noise,
    so that every tensor matters to the output.
    """
    torch.manual_seed(seed)
    model = FloatModel(config)
    generator = torch.Generator().manual_seed(seed + 1)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point() and value.numel() > 1 and torch.all(value == value.flatten()[0]) and key != "fmt.pos_embed":
            value = value + 0.05 * torch.randn(value.shape, generator=generator)
        state[key] = value
    return legacy_weight_norm_names(state)


def official_extra_tensors(model_config: FloatConfig, with_buffers: bool) -> dict[str, Tensor]:
    """Tensors the released float.pth holds that no computation reads, and optionally its constant buffers."""
    channels = model_config.motion_autoencoder.channels(4)
    extras = {
        "motion_autoencoder.dec.to_rgb1.bias": torch.zeros(1, 3, 1, 1),
        "motion_autoencoder.dec.to_rgb1.conv.0.weight": torch.randn(3, channels, 1, 1),
        "motion_autoencoder.dec.to_rgb1.conv.1.bias": torch.zeros(1, 3, 1, 1),
        "motion_autoencoder.dec.conv1.noise.weight": torch.zeros(1),
    }
    for i in range(2 * model_config.motion_autoencoder.num_levels):
        extras[f"motion_autoencoder.dec.convs.{i}.noise.weight"] = torch.zeros(1)
    if with_buffers:
        with torch.device("meta"):
            skeleton = FloatModel(model_config)
        for name, module in skeleton.named_modules():
            if isinstance(module, Blur):
                extras[f"{name}.kernel"] = blur_kernel(torch.device("cpu"), torch.float32, module.gain)
            elif isinstance(module, Upsample):
                extras[f"{name}.kernel"] = blur_kernel(torch.device("cpu"), torch.float32, 4.0)
        fmt = model_config.fmt
        extras["fmt.alignment_mask"] = ~attention_band(fmt.sequence_length, fmt.attention_window)
    return extras


def _copy_preprocessor_config(folder: Path, model_name: str) -> None:
    source = resources.files(__package__).joinpath("hf_configs", model_name, "preprocessor_config.json")
    (folder / "preprocessor_config.json").write_text(source.read_text())


def write_official_layout(
    folder: str | Path,
    config: FloatConfig | None = None,
    seed: int = 0,
    float_format: str = "pth",
    with_buffers: bool = False,
) -> Path:
    """Write `float.pth` (or `float.safetensors`, no metadata, like a plain conversion) and the two
    HuggingFace folders, in the released layout, with random weights. Returns the folder."""
    config = config or FloatConfig()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = random_weights(config, seed)

    float_part = {k: v for k, v in state.items() if not k.startswith(("audio_encoder.wav2vec2.", "emotion_encoder."))}
    float_part.update(official_extra_tensors(config, with_buffers))
    if float_format == "pth":
        torch.save(float_part, folder / "float.pth")
    elif float_format == "safetensors":
        safetensors.torch.save_file(float_part, str(folder / "float.safetensors"))
    else:
        raise ValueError(f"float_format must be 'pth' or 'safetensors', got {float_format!r}")

    # wav2vec2-base-960h ships a Wav2Vec2ForCTC checkpoint: `wav2vec2.` prefix and a CTC head.
    audio_dir = folder / AUDIO_MODEL_NAME
    audio_dir.mkdir(exist_ok=True)
    (audio_dir / "config.json").write_text(json.dumps(config.wav2vec2, indent=2))
    _copy_preprocessor_config(audio_dir, AUDIO_MODEL_NAME)
    audio = {k[len("audio_encoder."):]: v for k, v in state.items() if k.startswith("audio_encoder.wav2vec2.")}
    hidden = config.wav2vec2["hidden_size"]
    audio["lm_head.weight"] = torch.randn(config.wav2vec2.get("vocab_size", 32), hidden) * 0.02
    audio["lm_head.bias"] = torch.zeros(config.wav2vec2.get("vocab_size", 32))
    safetensors.torch.save_file(audio, str(audio_dir / "model.safetensors"), metadata={"format": "pt"})

    emotion_dir = folder / EMOTION_MODEL_NAME
    if config.emotion is None:
        shutil.rmtree(emotion_dir, ignore_errors=True)
        return folder
    emotion_dir.mkdir(exist_ok=True)
    (emotion_dir / "config.json").write_text(json.dumps(config.emotion, indent=2))
    _copy_preprocessor_config(emotion_dir, EMOTION_MODEL_NAME)
    prefix = "emotion_encoder.wav2vec2_for_emotion."
    emotion = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    torch.save(emotion, emotion_dir / "pytorch_model.bin")
    return folder
