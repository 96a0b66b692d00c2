"""Reading FLOAT checkpoints safely, in every layout users have, and building the model from them.

Accepted sources (all read with safetensors or `torch.load(weights_only=True)`, never by running code):
- a model folder as the existing FLOAT packs lay it out: `float.pth` or `float.safetensors`, plus the
  HuggingFace folders `wav2vec2-base-960h/` and `wav2vec-english-speech-emotion-recognition/` beside it
  (or in ComfyUI's `models/audio/`);
- the single file `FLOAT.safetensors` holding every network under the same module paths;
- individual files of one network each (motion auto-encoder, encoder or decoder alone, FMT, audio
  projection), alone or as a list.
A file's layout is recognised from its key names, not its file name. Sizes come from the safetensors
metadata this package writes, else from tensor shapes (`infer_config`).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn
from transformers import Wav2Vec2Model

from .config import (
    AUDIO_MODEL_NAME,
    EMOTION_MODEL_NAME,
    FloatConfig,
    FMTConfig,
    MotionAutoEncoderConfig,
    bundled_hf_config,
)
from .audio import EmotionEncoder, wav2vec2_config
from .fmt import attention_band
from .model import FloatModel
from .motion_autoencoder import blur_kernel

log = logging.getLogger(__name__)
M = TypeVar("M", bound=nn.Module)

PathLike = str | Path
CONFIG_METADATA_KEY = "float_config"
FLOAT_FILE_NAMES = ("float.safetensors", "float.pth", "FLOAT.safetensors")
# set-soft/ComfyUI-FLOAT_Optimized's split files, relative to the model folder.
SPLIT_FILE_NAMES = (
    "motion_autoencoder/encoder.safetensors",
    "motion_autoencoder/decoder.safetensors",
    "fmt/fmt.safetensors",
    "audio_projections/projection.safetensors",
)
HF_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, incomplete or of another model; the message says which and what to do."""


# --- Layouts: the prefix that turns a file's keys into FLOAT module paths ------------------------------------

_WAV2VEC2_MODULES = {"feature_extractor", "feature_projection", "encoder", "masked_spec_embed", "adapter"}
# (prefix added to every key, first key segments that identify such a file)
_FLOAT_LAYOUTS = (
    ("", {"motion_autoencoder", "audio_encoder", "emotion_encoder", "fmt"}),
    ("motion_autoencoder.", {"enc", "dec"}),
    ("motion_autoencoder.enc.", {"net_app", "fc"}),
    ("motion_autoencoder.dec.", {"direction", "input", "conv1", "convs", "to_rgbs", "to_flows", "to_rgb1"}),
    ("fmt.", {"pos_embed", "alignment_mask", "x_embedder", "t_embedder", "c_embedder", "blocks", "decoder"}),
    ("audio_encoder.", {"audio_projection"}),
    ("audio_encoder.audio_projection.", {"0", "1"}),
)
_AUDIO_LAYOUTS = (("audio_encoder.", {"wav2vec2", "lm_head"}), ("audio_encoder.wav2vec2.", _WAV2VEC2_MODULES))
_EMOTION_LAYOUTS = (
    ("emotion_encoder.wav2vec2_for_emotion.", {"wav2vec2", "classifier"}),
    ("emotion_encoder.wav2vec2_for_emotion.wav2vec2.", _WAV2VEC2_MODULES),
)

# Tensors of the released files that no computation reads: the decoder's to_rgb1 and NoiseInjection
# weights (no noise is injected), and the CTC head of wav2vec2-base-960h.
_UNUSED = re.compile(r"^motion_autoencoder\.dec\.(to_rgb1\.|(conv1|convs\.\d+)\.noise\.weight$)|\.lm_head\.")
# Constant buffers some files carry: checked against the values this package computes, then dropped.
_BLUR_KERNEL = re.compile(r"^motion_autoencoder\..*\.(kernel)$")
_ALIGNMENT_MASK = "fmt.alignment_mask"
# Present in transformers' Wav2Vec2Model but used only for training-time masking.
_OPTIONAL = re.compile(r"masked_spec_embed$")
_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def _component(key: str) -> str:
    """The network a canonical key belongs to, for messages."""
    for prefix, name in (
        ("motion_autoencoder.", "motion auto-encoder"),
        ("audio_encoder.audio_projection.", "audio projection"),
        ("audio_encoder.", "wav2vec2 audio encoder"),
        ("emotion_encoder.", "speech-emotion model"),
        ("fmt.", "flow-matching transformer"),
    ):
        if key.startswith(prefix):
            return name
    return "unknown"


# --- Reading files ------------------------------------------------------------------------------------------


def read_tensors(path: PathLike) -> dict[str, Tensor]:
    """All tensors of a .safetensors, .pth, .pt, .ckpt or .bin file, safely (no code is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty: the download did not finish; download it again")
    if path.suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(str(path))
        except Exception as error:  # safetensors raises its own SafetensorError and OSError subclasses
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({error}); it is probably truncated or corrupt: download it again"
            ) from error
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) serialisation
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} holds Python objects other than tensors, which this package refuses to unpickle for safety "
            f"({str(error).splitlines()[0]}); convert it to a plain state dict or safetensors"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(
            f"{path} could not be read as a PyTorch checkpoint ({str(error).splitlines()[0]}); it is probably truncated "
            f"or not a checkpoint: download it again"
        ) from error
    return _unwrap(data, path)


def _unwrap(data: object, path: Path) -> dict[str, Tensor]:
    """A flat {name: tensor} dict from the shapes training scripts save: nested 'state_dict'/'model', 'module.' prefixes."""
    while isinstance(data, dict) and len(data) == 1 and next(iter(data)) in ("state_dict", "model", "module", "generator"):
        data = next(iter(data.values()))
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{path} does not hold a state dict of tensors (found {type(data).__name__}); it is not a FLOAT checkpoint")
    tensors = {key: value for key, value in data.items() if isinstance(value, Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors; it is not a FLOAT checkpoint")
    if all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    return tensors


def read_metadata(path: PathLike) -> dict[str, str]:
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    with safetensors.safe_open(str(path), framework="pt") as file:
        return file.metadata() or {}


def _describe_keys(keys: Iterable[str]) -> str:
    """'a.b (120 tensors), c (3 tensors)': what a file's keys look like, by their first two segments."""
    counts: dict[str, int] = {}
    for key in keys:
        head = ".".join(key.split(".")[:2])
        counts[head] = counts.get(head, 0) + 1
    top = sorted(counts.items(), key=lambda item: -item[1])[:6]
    return ", ".join(f"{head} ({n} tensors)" for head, n in top)


def _foreign_hint(keys: Sequence[str]) -> str:
    joined = " ".join(keys[:200])
    if "model.diffusion_model" in joined or "first_stage_model" in joined:
        return " It looks like a Stable Diffusion checkpoint."
    if "lora" in joined.lower():
        return " It looks like a LoRA."
    if any(key.split(".")[0] in _WAV2VEC2_MODULES | {"wav2vec2"} for key in keys):
        return f" It looks like a wav2vec2 model: put it in a '{AUDIO_MODEL_NAME}' or '{EMOTION_MODEL_NAME}' folder with its config.json."
    return ""


def _to_canonical(tensors: dict[str, Tensor], layouts: Sequence[tuple[str, set[str]]], path: Path, what: str) -> dict[str, Tensor]:
    """Rename a file's keys to FLOAT module paths with the layout that explains most of them."""
    best_prefix, best_count = "", 0
    for prefix, heads in layouts:
        count = sum(key.split(".")[0] in heads for key in tensors)
        if count > best_count:
            best_prefix, best_count = prefix, count
    if best_count == 0:
        raise CheckpointError(
            f"{path} is not a {what}: its keys match no known FLOAT layout. They look like: "
            f"{_describe_keys(tensors)}.{_foreign_hint(list(tensors))}"
        )
    heads = next(h for p, h in layouts if p == best_prefix)
    unknown = [key for key in tensors if key.split(".")[0] not in heads]
    if unknown:
        log.warning("%s: ignoring %d tensors of no FLOAT network: %s", path, len(unknown), ", ".join(unknown[:8]))
    return {best_prefix + key: value for key, value in tensors.items() if key.split(".")[0] in heads}


def legacy_weight_norm_names(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """`...parametrizations.weight.original0/1` -> `...weight_g/_v`: one spelling for both naming eras."""
    renamed = {}
    for key, value in tensors.items():
        for legacy, live in _WEIGHT_NORM.items():
            if key.endswith(live):
                key = key[: -len(live)] + legacy
        renamed[key] = value
    return renamed


# --- Finding the files ---------------------------------------------------------------------------------------


@dataclass
class CheckpointFiles:
    """Where each part of a FLOAT model comes from. Later sources win where they name the same tensor."""

    float_files: list[Path] = field(default_factory=list)
    audio_folder: Path | None = None
    emotion_folder: Path | None = None


def _find_hf_folder(near: Path, name: str) -> Path | None:
    # Beside the FLOAT file (the official layout), or in ComfyUI's models/audio (set-soft's layout).
    for folder in (near / name, near.parent / "audio" / name):
        if folder.is_dir():
            return folder
    return None


def find_checkpoint_files(
    source: PathLike | Sequence[PathLike],
    audio_encoder: PathLike | None = None,
    emotion_encoder: PathLike | bool | None = None,
) -> CheckpointFiles:
    """Resolve a model folder, a file or a list of files to the files that make up the model.

    `audio_encoder` / `emotion_encoder` name a HuggingFace folder explicitly; by default they are
    looked for beside the FLOAT files. `emotion_encoder=False` leaves the emotion model out.
    """
    if isinstance(source, (str, Path)):
        source = Path(source)
        if source.is_dir():
            found = [source / name for name in FLOAT_FILE_NAMES if (source / name).is_file()]
            if found:
                float_files = found[:1]
            else:
                float_files = [source / name for name in SPLIT_FILE_NAMES if (source / name).is_file()]
            if not float_files:
                raise CheckpointError(
                    f"no FLOAT checkpoint in {source}: expected one of {', '.join(FLOAT_FILE_NAMES)} "
                    f"(download them with `python -m float_model download`, or put the released float.pth there)"
                )
            folder = source
        elif source.is_file():
            float_files, folder = [source], source.parent
        else:
            raise CheckpointError(f"checkpoint not found: {source}")
    else:
        float_files = [Path(p) for p in source]
        missing = [str(p) for p in float_files if not p.is_file()]
        if not float_files or missing:
            raise CheckpointError(f"checkpoint files not found: {', '.join(missing) or '(none given)'}")
        folder = float_files[0].parent

    files = CheckpointFiles(float_files=float_files)
    files.audio_folder = Path(audio_encoder) if audio_encoder is not None else _find_hf_folder(folder, AUDIO_MODEL_NAME)
    if emotion_encoder is not False:
        explicit = emotion_encoder not in (None, True)
        files.emotion_folder = Path(emotion_encoder) if explicit else _find_hf_folder(folder, EMOTION_MODEL_NAME)
    return files


def _read_hf_config(folder: Path, what: str) -> dict:
    if not folder.is_dir():
        raise CheckpointError(f"the {what} folder {folder} does not exist")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{folder} has no config.json: copy the whole {what} folder, not only its weights")
    try:
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{config_path} is not valid JSON ({error}): download it again") from error


def _read_hf_folder(folder: Path, layouts: Sequence[tuple[str, set[str]]], what: str) -> tuple[dict[str, Tensor], dict]:
    """The weights of a HuggingFace model folder (canonical keys) and its config.json."""
    config = _read_hf_config(folder, what)
    weights = next((folder / name for name in HF_WEIGHT_NAMES if (folder / name).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder} has no weights: expected {' or '.join(HF_WEIGHT_NAMES)}")
    return _to_canonical(read_tensors(weights), layouts, weights, what), config


# --- Configuration ---------------------------------------------------------------------------------------------


def _shape(tensors: dict[str, Tensor], key: str) -> torch.Size:
    if key not in tensors:
        raise CheckpointError(
            f"cannot read the model's sizes: the checkpoint has no tensor '{key}' ({_component(key)}); "
            f"the file is incomplete or not a FLOAT checkpoint: download it again"
        )
    return tensors[key].shape


def _count(tensors: dict[str, Tensor], pattern: str) -> int:
    """Number of numbered blocks: the highest index + 1, so that a hole shows up as missing tensors."""
    regex = re.compile(pattern)
    return 1 + max((int(m.group(1)) for key in tensors if (m := regex.match(key))), default=-1)


def _first_key(tensors: dict[str, Tensor], pattern: str) -> str:
    """Any key of a numbered block, so one block missing is reported as missing tensors, not as unreadable sizes."""
    return next((key for key in tensors if re.fullmatch(pattern, key)), pattern)


def infer_motion_autoencoder_config(tensors: dict[str, Tensor]) -> MotionAutoEncoderConfig:
    # convs.0 is the stem; ResBlocks 1..levels each halve the resolution down to 4 px.
    levels = _count(tensors, r"motion_autoencoder\.enc\.net_app\.convs\.(\d+)\.conv1\.") - 1
    image_size = 4 * 2**levels
    return MotionAutoEncoderConfig(
        image_size=image_size,
        latent_dim=_shape(tensors, "motion_autoencoder.enc.fc.0.weight")[0],
        motion_dim=_shape(tensors, "motion_autoencoder.dec.direction.weight")[1],
        channel_base=_shape(tensors, "motion_autoencoder.enc.net_app.convs.0.0.weight")[0] * image_size,
        channel_max=_shape(tensors, "motion_autoencoder.dec.input.input")[1],
    )


def _attention_window(mask: Tensor | None, default: int) -> int:
    """The band width a stored alignment mask encodes (True = blocked), or the official value."""
    if mask is None:
        return default
    for window in range(mask.shape[0]):
        if torch.equal(mask.bool(), ~attention_band(mask.shape[0], window)):
            return window
    log.warning("fmt.alignment_mask is not a symmetric band; using the official attention window of %d frames", default)
    return default


def infer_fmt_config(tensors: dict[str, Tensor]) -> FMTConfig:
    official = FMTConfig()
    hidden, motion_dim = _shape(tensors, "fmt.x_embedder.proj.weight")
    audio_dim = _shape(tensors, "audio_encoder.audio_projection.0.weight")[0]
    sequence = _shape(tensors, "fmt.pos_embed")[1]
    if hidden % official.num_heads:
        raise CheckpointError(
            f"the FMT hidden size {hidden} is not divisible by the official {official.num_heads} attention heads and "
            f"the checkpoint does not say its head count: convert it with its configuration (safetensors metadata)"
        )
    return FMTConfig(
        motion_dim=motion_dim,
        audio_dim=audio_dim,
        emotion_dim=_shape(tensors, "fmt.c_embedder.weight")[1] - motion_dim - audio_dim,
        hidden_size=hidden,
        depth=_count(tensors, r"fmt\.blocks\.(\d+)\.attn\.qkv\.weight"),
        num_heads=official.num_heads,
        mlp_ratio=_shape(tensors, _first_key(tensors, r"fmt\.blocks\.\d+\.mlp\.fc1\.weight"))[0] / hidden,
        num_frames=sequence - official.num_prev_frames,
        num_prev_frames=official.num_prev_frames,
        attention_window=_attention_window(tensors.get(_ALIGNMENT_MASK), official.attention_window),
        frequency_dim=_shape(tensors, "fmt.t_embedder.mlp.0.weight")[1],
    )


def infer_wav2vec2_config(tensors: dict[str, Tensor], prefix: str, base: dict) -> dict:
    """The official wav2vec2 config with every size that tensor shapes tell replaced by the file's."""
    p = prefix
    layers = _count(tensors, re.escape(p) + r"encoder\.layers\.(\d+)\.attention\.q_proj\.weight")
    convs = _count(tensors, re.escape(p) + r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight")
    hidden = _shape(tensors, p + "feature_projection.projection.weight")[0]
    pos_conv = _shape(tensors, p + "encoder.pos_conv_embed.conv.weight_v")
    conv_shapes = [_shape(tensors, f"{p}feature_extractor.conv_layers.{i}.conv.weight") for i in range(convs)]
    config = dict(base)
    config.update(
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=_shape(tensors, _first_key(tensors, re.escape(p) + r"encoder\.layers\.\d+\.feed_forward\.intermediate_dense\.weight"))[0],
        num_feat_extract_layers=convs,
        conv_dim=[s[0] for s in conv_shapes],
        conv_kernel=[s[2] for s in conv_shapes],
        conv_stride=list(base["conv_stride"][:convs]) + [2] * max(0, convs - len(base["conv_stride"])),
        conv_bias=f"{p}feature_extractor.conv_layers.0.conv.bias" in tensors,
        feat_extract_norm="layer" if f"{p}feature_extractor.conv_layers.1.layer_norm.weight" in tensors else "group",
        num_conv_pos_embeddings=pos_conv[2],
        num_conv_pos_embedding_groups=hidden // pos_conv[1],
    )
    if hidden % config["num_attention_heads"]:
        raise CheckpointError(
            f"wav2vec2 hidden size {hidden} is not divisible by the official {config['num_attention_heads']} heads; "
            f"load this model from a folder with its config.json"
        )
    return config


def infer_emotion_config(tensors: dict[str, Tensor]) -> dict:
    """The speech-emotion model's HuggingFace config from its tensors (canonical keys) and the official values."""
    prefix = "emotion_encoder.wav2vec2_for_emotion."
    emotion = infer_wav2vec2_config(tensors, prefix + "wav2vec2.", bundled_hf_config(EMOTION_MODEL_NAME))
    labels = _shape(tensors, prefix + "classifier.out_proj.weight")[0]
    if labels != len(emotion["id2label"]):
        raise CheckpointError(f"the emotion classifier has {labels} classes, the official model 7; load it from a folder with its config.json")
    return emotion


def infer_config(tensors: dict[str, Tensor], wav2vec2: dict | None = None, emotion: dict | None = None) -> FloatConfig:
    """Sizes from tensor shapes (canonical keys), official values for what shapes cannot tell.

    `wav2vec2` / `emotion` are the HuggingFace configs when known (from a folder's config.json);
    otherwise they are inferred from the tensors when present, and the official configs when not.
    """
    if wav2vec2 is None:
        base = bundled_hf_config(AUDIO_MODEL_NAME)
        has_weights = any(key.startswith("audio_encoder.wav2vec2.") for key in tensors)
        wav2vec2 = infer_wav2vec2_config(tensors, "audio_encoder.wav2vec2.", base) if has_weights else base
    if emotion is None and any(key.startswith("emotion_encoder.") for key in tensors):
        emotion = infer_emotion_config(tensors)
    return FloatConfig(
        motion_autoencoder=infer_motion_autoencoder_config(tensors),
        fmt=infer_fmt_config(tensors),
        wav2vec2=wav2vec2,
        emotion=emotion,
    )


def _check_audio_widths(config: FloatConfig, tensors: dict[str, Tensor], audio_source: str) -> None:
    key = "audio_encoder.audio_projection.0.weight"
    if key in tensors and tensors[key].shape[1] != config.audio_feature_dim:
        w = config.wav2vec2
        raise CheckpointError(
            f"the audio projection takes {tensors[key].shape[1]} stacked wav2vec2 features, but the audio encoder from "
            f"{audio_source} gives {w['num_hidden_layers']} layers x {w['hidden_size']} = {config.audio_feature_dim}: "
            f"that is not the wav2vec2 model this FLOAT checkpoint was trained with ({AUDIO_MODEL_NAME})"
        )


# --- Collecting and loading -----------------------------------------------------------------------------------------


@dataclass
class CollectedCheckpoint:
    tensors: dict[str, Tensor]  # canonical keys, legacy weight-norm names
    origin: dict[str, Path]  # which file each tensor came from
    config: FloatConfig


def collect_checkpoint(files: CheckpointFiles, hf_weights: bool = True) -> CollectedCheckpoint:
    """Read every file, rename to canonical keys, merge (FLOAT files win over HF folders) and resolve the config.

    With `hf_weights=False` the HuggingFace folders contribute their config.json only.
    """
    tensors: dict[str, Tensor] = {}
    origin: dict[str, Path] = {}

    def add(new: dict[str, Tensor], path: Path) -> None:
        new = legacy_weight_norm_names(new)
        tensors.update(new)
        origin.update(dict.fromkeys(new, path))

    wav2vec2_config = emotion_config = None
    audio_source = "the official configuration"
    if files.audio_folder is not None:
        if hf_weights:
            weights, wav2vec2_config = _read_hf_folder(files.audio_folder, _AUDIO_LAYOUTS, "wav2vec2 audio encoder")
            add(weights, files.audio_folder)
        else:
            wav2vec2_config = _read_hf_config(files.audio_folder, "wav2vec2 audio encoder")
        audio_source = str(files.audio_folder)
    if files.emotion_folder is not None and hf_weights:
        weights, emotion_config = _read_hf_folder(files.emotion_folder, _EMOTION_LAYOUTS, "speech-emotion model")
        add(weights, files.emotion_folder)

    metadata_config = None
    for path in files.float_files:
        add(_to_canonical(read_tensors(path), _FLOAT_LAYOUTS, path, "FLOAT checkpoint"), path)
        if CONFIG_METADATA_KEY in (metadata := read_metadata(path)):
            metadata_config = FloatConfig.from_json(metadata[CONFIG_METADATA_KEY])
        if any(key.startswith("audio_encoder.wav2vec2.") for key in tensors) and wav2vec2_config is None:
            audio_source = str(path)

    if metadata_config is not None:
        config = replace(
            metadata_config,
            wav2vec2=wav2vec2_config or metadata_config.wav2vec2,
            emotion=emotion_config or metadata_config.emotion,
        )
    else:
        config = infer_config(tensors, wav2vec2_config, emotion_config)
    if emotion_config is None and not any(key.startswith("emotion_encoder.") for key in tensors):
        config = config.with_emotion(None)
    _check_audio_widths(config, tensors, audio_source)
    return CollectedCheckpoint(tensors, origin, config)


def _check_constants(tensors: dict[str, Tensor], origin: dict[str, Path]) -> dict[str, Tensor]:
    """Drop unused tensors and constant buffers, warning where a buffer is not the constant this package uses."""
    kept = {}
    reference_blur = blur_kernel(torch.device("cpu"), torch.float32)
    for key, value in tensors.items():
        if _UNUSED.search(key) or key == _ALIGNMENT_MASK:
            continue  # the mask's band was read by infer_fmt_config
        if _BLUR_KERNEL.match(key):
            kernel = value.float()
            if kernel.shape != reference_blur.shape or not torch.allclose(kernel / kernel.sum(), reference_blur, atol=1e-6):
                log.warning("%s: blur kernel %s is not [1, 3, 3, 1]; this package always uses [1, 3, 3, 1]", origin[key], key)
            continue
        kept[key] = value
    return kept


def _live_name(key: str, live_keys: set[str]) -> str:
    for legacy, live in _WEIGHT_NORM.items():
        if key.endswith(legacy):
            renamed = key[: -len(legacy)] + live
            if renamed in live_keys:
                return renamed
    return key


def build_model(
    collected: CollectedCheckpoint,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    with_wav2vec2: bool = True,
) -> FloatModel:
    """Instantiate FloatModel on the meta device and adopt the checkpoint's tensors (no random init, no double copy).

    `with_wav2vec2=False` builds it without the wav2vec2 network (its slot stays empty): for callers that load
    the audio encoder on its own and attach it with `FloatModel.with_speech_networks`."""
    with torch.device("meta"):
        model = FloatModel(collected.config)
    if not with_wav2vec2:
        model.audio_encoder.wav2vec2 = None
    return _adopt(model, collected.tensors, collected.origin, device, dtype)


def _adopt(model: M, tensors: dict[str, Tensor], origin: dict[str, Path], device: torch.device | str, dtype: torch.dtype) -> M:
    """Give a network built on the meta device the checkpoint's tensors (canonical keys); every tensor it
    expects must be there with its shape, or the error names the network and the file."""
    expected = model.state_dict()
    live_keys = set(expected)
    tensors = {_live_name(k, live_keys): v for k, v in _check_constants(tensors, origin).items()}
    origin = {_live_name(k, live_keys): v for k, v in origin.items()}

    missing = [key for key in expected if key not in tensors and not _OPTIONAL.search(key)]
    if missing:
        by_component: dict[str, list[str]] = {}
        for key in missing:
            by_component.setdefault(_component(key), []).append(key)
        lines = []
        for component, keys in by_component.items():
            sources = sorted({str(origin[k]) for k in origin if _component(k) == component})
            where = f"in {', '.join(sources)}" if sources else "(no file provided it)"
            lines.append(f"{len(keys)} tensors of the {component} are missing {where}, first: {', '.join(keys[:5])}")
        raise CheckpointError(
            "the checkpoint is incomplete: " + "; ".join(lines) + ". The file is truncated or of another model: download it again."
        )
    extra = [key for key in tensors if key not in expected]
    if extra:
        log.warning("ignoring %d tensors that no FLOAT network has: %s", len(extra), ", ".join(extra[:8]))
    for key, value in expected.items():
        if key in tensors and tensors[key].shape != value.shape:
            raise CheckpointError(
                f"{origin[key]}: tensor {key} has shape {tuple(tensors[key].shape)}, but the {_component(key)} built from "
                f"this checkpoint's configuration needs {tuple(value.shape)}: the files come from different models"
            )
    state = {key: tensors[key].to(dtype) if tensors[key].is_floating_point() else tensors[key] for key in expected if key in tensors}
    for key in expected:
        if key not in state:  # optional training-only parameters
            state[key] = torch.zeros(expected[key].shape, dtype=dtype)
    model.load_state_dict(state, assign=True)
    model.requires_grad_(False)
    return model.to(device).eval()


def load_float_model(
    source: PathLike | Sequence[PathLike],
    audio_encoder: PathLike | None = None,
    emotion_encoder: PathLike | bool | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> FloatModel:
    """Load FLOAT from a model folder, `FLOAT.safetensors`, `float.pth` or a list of per-network files.

    The wav2vec2 and speech-emotion folders are found beside the FLOAT file unless given. The emotion
    model is optional: without it (not found, or `emotion_encoder=False`) emotion must be chosen, not
    predicted; `emotion_encoder=True` makes it required.
    """
    files = find_checkpoint_files(source, audio_encoder, emotion_encoder)
    collected = collect_checkpoint(files)
    if not any(key.startswith("audio_encoder.wav2vec2.") for key in collected.tensors):
        raise CheckpointError(
            f"the wav2vec2 audio encoder was not found: put the '{AUDIO_MODEL_NAME}' folder (config.json and "
            f"model.safetensors) beside {files.float_files[0]} or in ComfyUI's models/audio, or use FLOAT.safetensors"
        )
    if emotion_encoder is True and collected.config.emotion is None:
        raise CheckpointError(
            f"the speech-emotion model was required but not found: put the '{EMOTION_MODEL_NAME}' folder beside "
            f"{files.float_files[0]}, or download it with `python -m float_model download`"
        )
    return build_model(collected, device, dtype)


# --- Loading the networks one by one (ComfyUI's separate loader nodes) ---------------------------------------


def load_float_networks(source: PathLike | Sequence[PathLike], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> FloatModel:
    """The FLOAT file's own networks: motion auto-encoder, FMT and audio projection, without the speech networks.

    The audio encoder's sizes come from the config.json of a wav2vec2 folder beside the file (or in ComfyUI's
    models/audio) when there is one, else from the official configuration. Attach the networks loaded by
    `load_audio_encoder` and `load_emotion_encoder` with `FloatModel.with_speech_networks`.
    """
    files = find_checkpoint_files(source, emotion_encoder=False)
    collected = collect_checkpoint(files, hf_weights=False)
    own = {key: value for key, value in collected.tensors.items() if not key.startswith(("audio_encoder.wav2vec2.", "emotion_encoder."))}
    networks = CollectedCheckpoint(own, collected.origin, collected.config.with_emotion(None))
    return build_model(networks, device, dtype, with_wav2vec2=False)


def _speech_network_tensors(source: Path, prefix: str, layouts: Sequence[tuple[str, set[str]]], what: str, model_name: str) -> tuple[dict[str, Tensor], dict]:
    """(canonical tensors under `prefix`, HuggingFace config) from the network's folder or from a FLOAT file holding it."""
    if source.is_dir():
        tensors, config = _read_hf_folder(source, layouts, what)
    elif source.is_file():
        tensors = {k: v for k, v in _to_canonical(read_tensors(source), _FLOAT_LAYOUTS, source, "FLOAT checkpoint").items() if k.startswith(prefix)}
        if not tensors:
            raise CheckpointError(f"{source} holds no {what}: choose the '{model_name}' folder instead")
        metadata = read_metadata(source)
        if CONFIG_METADATA_KEY in metadata:
            float_config = FloatConfig.from_json(metadata[CONFIG_METADATA_KEY])
            config = float_config.wav2vec2 if model_name == AUDIO_MODEL_NAME else float_config.emotion
        else:
            config = None
    else:
        raise CheckpointError(f"the {what} was not found at {source}")
    return legacy_weight_norm_names(tensors), config


def load_audio_encoder(source: PathLike, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Wav2Vec2Model:
    """The wav2vec2 audio encoder alone, from its HuggingFace folder or from a file that holds it (FLOAT.safetensors)."""
    source = Path(source)
    prefix = "audio_encoder.wav2vec2."
    tensors, config = _speech_network_tensors(source, prefix, _AUDIO_LAYOUTS, "wav2vec2 audio encoder", AUDIO_MODEL_NAME)
    if config is None:
        config = infer_wav2vec2_config(tensors, prefix, bundled_hf_config(AUDIO_MODEL_NAME))
    # A holder with the canonical module path, so that messages name the network and the file.
    with torch.device("meta"):
        holder = nn.Module()
        holder.audio_encoder = nn.Module()
        holder.audio_encoder.wav2vec2 = Wav2Vec2Model(wav2vec2_config(config))
    return _adopt(holder, tensors, dict.fromkeys(tensors, source), device, dtype).audio_encoder.wav2vec2


def load_emotion_encoder(source: PathLike, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> EmotionEncoder:
    """The speech-emotion classifier alone, from its HuggingFace folder or from a file that holds it (FLOAT.safetensors)."""
    source = Path(source)
    prefix = "emotion_encoder."
    tensors, config = _speech_network_tensors(source, prefix, _EMOTION_LAYOUTS, "speech-emotion model", EMOTION_MODEL_NAME)
    if config is None:
        config = infer_emotion_config(tensors)
    with torch.device("meta"):
        holder = nn.Module()
        holder.emotion_encoder = EmotionEncoder(config)
    return _adopt(holder, tensors, dict.fromkeys(tensors, source), device, dtype).emotion_encoder


# --- Writing ---------------------------------------------------------------------------------------------------


def save_checkpoint(tensors: dict[str, Tensor], config: FloatConfig, path: PathLike) -> None:
    """Write canonical tensors as safetensors with the configuration in the metadata."""
    tensors = legacy_weight_norm_names({key: value.detach().contiguous() for key, value in tensors.items()})
    safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt", CONFIG_METADATA_KEY: config.to_json()})


def save_model(model: FloatModel, path: PathLike) -> None:
    """Write a FloatModel (trained or loaded) as one self-describing safetensors file."""
    save_checkpoint(model.state_dict(), model.config, path)


def convert_checkpoint(source: PathLike | Sequence[PathLike], destination: PathLike, include_hf_folders: bool = False) -> FloatConfig:
    """float.pth (or any accepted source) -> safetensors with the configuration in its metadata.

    By default only the FLOAT files are converted (the HuggingFace folders stay as they are); with
    `include_hf_folders` the wav2vec2 and emotion folders found beside them are folded in too, which
    makes one self-contained file like FLOAT.safetensors.
    """
    files = find_checkpoint_files(source, emotion_encoder=None if include_hf_folders else False)
    collected = collect_checkpoint(files, hf_weights=include_hf_folders)
    save_checkpoint(_check_constants(collected.tensors, collected.origin), collected.config, destination)
    return collected.config
