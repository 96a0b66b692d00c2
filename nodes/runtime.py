"""What the FLOAT nodes need from ComfyUI: the model folders, devices and memory, progress and interruption.

Nothing here runs at import time except registering the `float` model folder; devices are chosen when a
loader runs, through comfy.model_management, so ComfyUI's --cpu, --highvram and friends are honoured.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import comfy.model_management as mm
import comfy.utils
import folder_paths
import safetensors
import torch
from torch import nn

from ..float_model.config import AUDIO_MODEL_NAME, EMOTION_MODEL_NAME, EMOTIONS
from ..float_model.download import DEFAULT_VARIANT, MODEL_FILES, download_models
from .types import Placement

FOLDER = "float"
FLOAT_EXTENSIONS = (".safetensors", ".pth", ".pt", ".ckpt")
# What each loader lists when nothing is installed yet: the files the download fetches.
DOWNLOADABLE = {"float": DEFAULT_VARIANT, "audio": AUDIO_MODEL_NAME, "emotion": EMOTION_MODEL_NAME}


def register_model_folder() -> None:
    """models/float, plus any `float:` entries users give in extra_model_paths.yaml (ComfyUI reads that first)."""
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def _float_roots() -> list[Path]:
    return [Path(p) for p in folder_paths.get_folder_paths(FOLDER)]


def _speech_roots() -> list[Path]:
    # HuggingFace folders also live in models/audio, where the set-soft pack puts them.
    return _float_roots() + [Path(folder_paths.models_dir) / "audio"]


def _is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def float_files() -> list[str]:
    """FLOAT checkpoints under the float folders (two levels deep), as names relative to their folder."""
    names = set()
    for root in _float_roots():
        if not root.is_dir():
            continue
        for path in list(root.glob("*")) + list(root.glob("*/*")):
            inside_hf = _is_hf_folder(path.parent) and path.parent != root
            if path.is_file() and path.suffix in FLOAT_EXTENSIONS and not inside_hf and not path.name.startswith("."):
                names.add(path.relative_to(root).as_posix())
    return sorted(names)


def _holds(path: Path, prefix: str) -> bool:
    """Whether a safetensors file holds tensors under `prefix` (only its header is read)."""
    if path.suffix != ".safetensors":
        return False
    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            return any(key.startswith(prefix) for key in file.keys())
    except Exception:  # an unreadable file is reported when it is loaded, not while listing
        return False


def speech_models(kind: str) -> list[str]:
    """HuggingFace folders of the wav2vec2 audio encoder ("audio") or the emotion classifier ("emotion"),
    and FLOAT files that hold that network (FLOAT.safetensors)."""
    emotion = kind == "emotion"
    names = set()
    for root in _speech_roots():
        if not root.is_dir():
            continue
        for folder in root.iterdir():
            if not folder.is_dir() or not _is_hf_folder(folder):
                continue
            try:
                config = json.loads((folder / "config.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if config.get("model_type") != "wav2vec2":
                continue
            # Both configs name Wav2Vec2ForCTC; the emotion model is the one whose labels are emotions.
            labels = {str(label).lower() for label in (config.get("id2label") or {}).values()}
            if bool(labels & set(EMOTIONS)) == emotion:
                names.add(folder.name)
    prefix = "emotion_encoder." if emotion else "audio_encoder.wav2vec2."
    for name in float_files():
        if any(_holds(root / name, prefix) for root in _float_roots()):
            names.add(name)
    return sorted(names)


def choices(kind: str) -> list[str]:
    """A loader's list; the downloadable default comes first when it is not installed, so a new workflow runs."""
    found = float_files() if kind == "float" else speech_models(kind)
    default = DOWNLOADABLE[kind]
    return found if default in found else [default, *found]


def resolve(name: str, kind: str) -> Path | None:
    roots = _float_roots() if kind == "float" else _speech_roots()
    for root in roots:
        candidate = root / name
        if candidate.exists():
            return candidate
    return None


def locate_or_download(name: str, kind: str) -> Path:
    """The file or folder chosen in a loader; the released files are downloaded when missing, with progress."""
    found = resolve(name, kind)
    if found is not None:
        return found
    destination = Path(folder_paths.get_folder_paths(FOLDER)[0])
    variant = "FLOAT.safetensors" if name == "FLOAT.safetensors" else DEFAULT_VARIANT
    wanted = name if kind == "float" else name + "/"  # a file, or every file of a HuggingFace folder
    files = [file for file in MODEL_FILES[variant] if file.local_path.startswith(wanted)]
    if not files:
        searched = ", ".join(str(root) for root in (_float_roots() if kind == "float" else _speech_roots()))
        raise FileNotFoundError(f"'{name}' is not in the FLOAT model folders ({searched}) and is not a released file to download: put it there, or choose another")
    bar = comfy.utils.ProgressBar(len(files))

    def on_file(path: str, done: int, total: int) -> None:
        bar.update_absolute(done, total)
        mm.throw_exception_if_processing_interrupted()

    download_models(destination, variant, only=lambda path: path.startswith(wanted), on_file=on_file)
    return destination / name


# --- Devices and memory ---------------------------------------------------------------------------------------

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def device_choices() -> list[str]:
    extra = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.device_count() > 1 else []
    return ["auto", "cpu", "cuda", *extra, "mps"]


def placement(device: str, precision: str, keep_loaded: bool) -> Placement:
    """A loader's device / precision / keep-loaded choices, checked against this machine."""
    if device == "auto":
        target = mm.get_torch_device()
    else:
        target = torch.device(device)
        if target.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device '{device}' was chosen, but this PyTorch ({torch.__version__}) sees no CUDA GPU: choose auto or cpu")
        if target.type == "cuda" and (target.index or 0) >= torch.cuda.device_count():
            raise RuntimeError(f"device '{device}' was chosen, but there are {torch.cuda.device_count()} CUDA GPUs")
        if target.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError("device 'mps' was chosen, but Apple's MPS backend is not available here: choose auto or cpu")
    if precision == "auto":
        # Half precision only where it is fast; bf16 first for its float32 range.
        if target.type == "cuda" and mm.should_use_bf16(target):
            dtype = torch.bfloat16
        elif target.type == "cuda" and mm.should_use_fp16(target):
            dtype = torch.float16
        else:
            dtype = torch.float32
    else:
        dtype = PRECISIONS[precision]
    return Placement(target, dtype, mm.unet_offload_device(), keep_loaded)


@contextmanager
def working(*networks: tuple[nn.Module, Placement]) -> Iterator[None]:
    """Networks on their compute device for the block; those not kept loaded go back to the offload device
    after it. ComfyUI is first asked to free the VRAM they need (it unloads its own models if it must)."""
    for network, where in networks:
        if where.device.type != "cpu" and next(network.parameters()).device != where.device:
            mm.free_memory(mm.module_size(network) * 1.3, where.device)
            network.to(where.device)
    try:
        yield
    finally:
        moved = False
        for network, where in networks:
            if not where.keep_loaded and where.offload_device != where.device:
                network.to(where.offload_device)
                moved = True
        if moved:
            mm.soft_empty_cache()


def intermediate_device() -> torch.device:
    """Where ComfyUI wants values that outlive a node (the CPU unless --gpu-only)."""
    return mm.intermediate_device()


def to_intermediate(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(intermediate_device())


# --- Progress and interruption --------------------------------------------------------------------------------


class Progress:
    """A ComfyUI progress bar that is also a cancel point: every update first honours Cancel."""

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(total)

    def __call__(self, done: int, total: int | None = None) -> None:
        mm.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(done, total)
