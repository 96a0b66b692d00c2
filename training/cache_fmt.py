"""Phase-2 cache: what the frozen networks make of every prepared clip, computed once.

Phase 2 trains only the flow-matching transformer (FMT) and the audio projection. Everything they take
in comes from frozen networks (the motion encoder, wav2vec2, the emotion classifier), so it is computed
here once per clip, and training reads it back instead of decoding video and running wav2vec2 every epoch.

    python -m training.cache_fmt --clips DIR --models MODEL_DIR --out CACHE_DIR [--device cuda] [--batch 16] [--limit N]

Cache format, version 1 (the contract with the trainer's data loader):

    CACHE_DIR/index.json
        {"format": 1, "fps": 25, "motion_dim": D, "audio_feature_dim": A, "emotion_dim": E,
         "config": {...},      the FloatConfig of the model that made the cache (model.config.to_json(), parsed)
         "clips": [{"name": "<name>", "frames": T, "file": "clips/<name>.safetensors"}, ...]}   sorted by name
    CACHE_DIR/clips/<name>.safetensors, one per clip, read with safetensors.torch.load_file:
        motion   (T, D) float32  the motion latent of every video frame,
                                 model.motion_latent(model.encode_image(frame).motion_coefficients)
        audio    (T, A) float16  every wav2vec2 layer's output side by side (AudioEncoder.stacked_features),
                                 A = layers * hidden; frame t comes from speech samples [640 t, 640 (t + 1)).
                                 The trainer applies float_model.audio.project_audio, since it trains the projection.
        emotion  (E,)   float32  the clip's emotion probabilities (speech.predict_emotion); they sum to 1
        metadata: "fps" "25", "frames" "T", "video" and "audio": the source files

T is the number of video frames (25 fps). `CacheIndex.load(CACHE_DIR)` reads the index back.

Building is resumable: a clip whose file is already there and complete (its header read back with the
shapes this model gives) is not computed again, and each file appears under its name only once fully
written, so an interrupted run leaves nothing half-written behind. One build per cache folder at a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import safetensors
import safetensors.torch
import torch
from torch import Tensor

from float_model import CheckpointError, FloatConfig, FloatModel, load_float_model
from float_model.media import MediaError, PathLike
from float_model.pipeline import image_to_model
from float_model.speech import predict_emotion, prepare_audio

from .clips import FPS, Clip, find_clips, read_frames, read_speech
from .files import write_atomically

try:
    from tqdm import tqdm
except ImportError:  # a log line per clip instead of a progress bar
    tqdm = None

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
INDEX_NAME = "index.json"
CLIPS_FOLDER = "clips"
# Speech and video of a prepared clip may differ by codec padding; more than this means they do not belong together.
MAX_LENGTH_MISMATCH_FRAMES = 2


class CachedClip(NamedTuple):
    """One row of the index: a clip's name, its number of frames T, and its .safetensors file."""

    name: str
    frames: int
    path: Path


@dataclass
class CacheIndex:
    """The cache's table of contents: its clips (sorted by name) and the sizes of their tensors.

    `config_json` is the configuration of the model that made the cache (`FloatConfig.from_json` reads it),
    so a trainer can check that its model takes these sizes.
    """

    clips: list[CachedClip]
    motion_dim: int
    audio_feature_dim: int
    emotion_dim: int
    config_json: str = field(repr=False)  # pages long: it holds both wav2vec2 configs

    @classmethod
    def load(cls, cache_dir: PathLike) -> CacheIndex:
        """Reads `cache_dir/index.json`; raises FileNotFoundError or ValueError, saying what to do, when it
        is missing, of another format version, or lists a clip file that is gone."""
        cache_dir = Path(cache_dir)
        index_path = cache_dir / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"no {INDEX_NAME} in {cache_dir}: build the cache with `python -m training.cache_fmt`")
        data = json.loads(index_path.read_text())
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{index_path} is cache format {data.get('format')!r}, this code reads format {FORMAT_VERSION}: build the cache again"
            )
        clips = [CachedClip(entry["name"], int(entry["frames"]), cache_dir / entry["file"]) for entry in data["clips"]]
        missing = [clip.path for clip in clips if not clip.path.is_file()]
        if missing:
            raise ValueError(f"{index_path} lists {len(missing)} clip file(s) that are gone, e.g. {missing[0]}: build the cache again")
        return cls(
            clips=clips,
            motion_dim=int(data["motion_dim"]),
            audio_feature_dim=int(data["audio_feature_dim"]),
            emotion_dim=int(data["emotion_dim"]),
            config_json=json.dumps(data["config"], sort_keys=True),
        )

    def save(self, cache_dir: PathLike) -> None:
        """Writes `cache_dir/index.json`, atomically; clip paths are stored relative to `cache_dir`."""
        cache_dir = Path(cache_dir)
        data = {
            "format": FORMAT_VERSION,
            "fps": FPS,
            "motion_dim": self.motion_dim,
            "audio_feature_dim": self.audio_feature_dim,
            "emotion_dim": self.emotion_dim,
            "config": json.loads(self.config_json),
            "clips": [
                {"name": clip.name, "frames": clip.frames, "file": clip.path.relative_to(cache_dir).as_posix()}
                for clip in self.clips
            ],
        }
        write_atomically(cache_dir / INDEX_NAME, lambda temporary: temporary.write_text(json.dumps(data, indent=1)))


def expected_layout(config: FloatConfig, frames: int) -> dict[str, tuple[str, list[int]]]:
    """Tensor name -> (safetensors dtype, shape) of a clip of `frames` frames cached with a model of `config`."""
    return {
        "motion": ("F32", [frames, config.motion_autoencoder.latent_dim]),
        "audio": ("F16", [frames, config.audio_feature_dim]),
        "emotion": ("F32", [config.fmt.emotion_dim]),
    }


def cached_frames(path: Path, config: FloatConfig) -> int | None:
    """The frame count of a complete cache file made with a model of `config`'s sizes, else None
    (missing, cut short, unreadable, or made with another model), from the file's header alone."""
    if not path.is_file():
        return None
    try:
        # safe_open checks that the data the header describes is all there, so a cut-short file fails here.
        with safetensors.safe_open(str(path), "pt") as file:
            frames = int((file.metadata() or {}).get("frames", -1))
            layout = {key: (file.get_slice(key).get_dtype(), list(file.get_slice(key).get_shape())) for key in file.keys()}
    except (safetensors.SafetensorError, OSError, ValueError):
        return None
    return frames if frames > 0 and layout == expected_layout(config, frames) else None


def encode_clip(model: FloatModel, clip: Clip, batch: int) -> dict[str, Tensor] | None:
    """One clip's cache tensors (see the module docstring), or None, with a warning, when its speech
    and video lengths differ by more than 2 frames. Call under torch.no_grad."""
    size = model.config.motion_autoencoder.image_size
    motion = torch.cat([
        model.motion_latent(model.encode_image(image_to_model(frames)).motion_coefficients).float().cpu()
        for frames in read_frames(clip.video, size, batch)
    ])  # fmt: skip
    frames = motion.shape[0]
    speech, sample_rate = read_speech(clip)
    per_frame = model.config.samples_per_frame
    if abs(speech.shape[0] - frames * per_frame) > MAX_LENGTH_MISMATCH_FRAMES * per_frame:
        log.warning(
            "skipping clip %r: its speech lasts %.2f s but its video %.2f s (%d frames at %d fps); "
            "prepare the video and the speech from the same span",
            clip.name, speech.shape[0] / sample_rate, frames / FPS, frames, FPS,
        )  # fmt: skip
        return None
    # Cut to the video's length, so that frame t's features come from its own 40 ms of speech rather
    # than from speech stretched over the video; a slightly short clip is padded by stacked_features.
    waveform, _ = prepare_audio(speech[: frames * per_frame], sample_rate)
    audio = model.audio_encoder.stacked_features(model.cast(waveform, model.audio_encoder), frames, per_frame)[0]
    audio = audio.cpu().half()
    if not torch.isfinite(audio).all():
        # float16 halves the cache; an overflow would otherwise poison training silently.
        raise ValueError(f"clip {clip.name!r}: the wav2vec2 features overflow float16; check the audio model")
    emotion = predict_emotion(model, waveform)[0].float().cpu()
    return {"motion": motion, "audio": audio.contiguous(), "emotion": emotion}


def _save_clip(path: Path, tensors: dict[str, Tensor], clip: Clip) -> None:
    frames = tensors["motion"].shape[0]
    metadata = {"fps": str(FPS), "frames": str(frames), "video": str(clip.video.resolve()), "audio": str(clip.audio.resolve())}
    write_atomically(path, lambda temporary: safetensors.torch.save_file(tensors, str(temporary), metadata=metadata))


def build_cache(
    clips_dir: PathLike,
    model: FloatModel,
    out_dir: PathLike,
    device: torch.device | str = "cpu",
    batch: int = 16,
    progress: bool = True,
    limit: int | None = None,
) -> CacheIndex:
    """Caches every prepared clip of `clips_dir` (the first `limit` by name, if given) in `out_dir` and
    writes the index, which lists the clips of this run; returns it.

    The model (loaded with its speech-emotion model) is moved to `device` and put in eval mode; `batch`
    frames go through the motion encoder at a time. Clips already cached completely are kept as they are.
    A clip whose speech and video lengths differ by more than 2 frames is skipped with a warning; any
    other problem with a clip stops the run with an error naming it (the clips done so far are kept).
    """
    if model.emotion_encoder is None:
        raise ValueError(
            "the cache holds each clip's emotion predicted from its speech: load the FLOAT model with its "
            "speech-emotion model (load_float_model(..., emotion_encoder=True))"
        )
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    clips = find_clips(clips_dir)[:limit]
    out_dir = Path(out_dir)
    clips_folder = out_dir / CLIPS_FOLDER
    clips_folder.mkdir(parents=True, exist_ok=True)
    # Left by a run that was killed outright (SIGKILL, power loss) and so could not remove its own.
    for leftover in clips_folder.glob(".*.part"):
        leftover.unlink()
    model.to(device).eval()

    cached: list[CachedClip] = []
    computed = skipped = 0
    showing_bar = progress and tqdm is not None
    with torch.no_grad():
        for clip in tqdm(clips, desc="caching clips", unit="clip") if showing_bar else clips:
            path = clips_folder / f"{clip.name}.safetensors"
            frames = cached_frames(path, model.config)
            state = "already cached"
            if frames is None:
                tensors = encode_clip(model, clip, batch)
                if tensors is None:
                    skipped += 1
                    continue
                frames = tensors["motion"].shape[0]
                _save_clip(path, tensors, clip)
                computed, state = computed + 1, "computed"
            if not showing_bar:
                log.info("%s: %d frames, %s", clip.name, frames, state)
            cached.append(CachedClip(clip.name, frames, path))

    config = model.config
    index = CacheIndex(cached, config.motion_autoencoder.latent_dim, config.audio_feature_dim, config.fmt.emotion_dim, config.to_json())
    index.save(out_dir)
    log.info(
        "%d clips in %s: %d computed now, %d already cached, %d skipped",
        len(cached), out_dir, computed, len(cached) - computed, skipped,
    )  # fmt: skip
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.cache_fmt",
        description="Cache the frozen networks' outputs (motion latents, wav2vec2 features, emotion) for phase-2 training.",
    )
    parser.add_argument("--clips", type=Path, required=True, help="folder of prepared clips: <name>.mp4 (square, 25 fps) and <name>.wav")
    parser.add_argument("--models", type=Path, required=True, help="FLOAT model folder, with the wav2vec2 and speech-emotion folders")
    parser.add_argument("--out", type=Path, required=True, help="cache folder (created; an existing one is resumed)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16, help="frames per motion-encoder call")
    parser.add_argument("--limit", type=int, default=None, help="cache only the first N clips by name (a quick trial)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        model = load_float_model(args.models, emotion_encoder=True, device=args.device)
        index = build_cache(args.clips, model, args.out, args.device, args.batch, limit=args.limit)
    except (CheckpointError, MediaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled: the clips cached so far are kept; run the same command again to go on", file=sys.stderr)
        return 130
    print(f"cached {len(index.clips)} clips ({sum(clip.frames for clip in index.clips)} frames) in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
