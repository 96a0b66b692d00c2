"""Render the test split: animate each prepared clip's first frame with the clip's own speech.

    python -m training.render_test --clips clips/test --models models/float --out renders/ [--side-by-side]

For every `<name>.mp4` (+ `<name>.wav`) in --clips, the first frame is the portrait and the speech drives
it, through float_model's pipeline as `python -m float_model generate` runs it. Writes `<name>.mp4`
(25 fps, with the speech) to --out, and with --side-by-side `<name>_compare.mp4`: real | generated.
`training.evaluate --generated OUT --real CLIPS` then scores the renders against the clips.

Every clip is sampled with the same seed, so a clip's render does not depend on which other clips are
in the folder or on --limit, and two runs on the same device and software give the same frames. Outputs that exist are skipped (each
is written to a temporary file and renamed when complete), so an interrupted run resumes where it
stopped; delete a file to render it again.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from float_model.checkpoint import CheckpointError, load_float_model
from float_model.config import EMOTIONS
from float_model.media import MediaError
from float_model.model import FloatModel
from float_model.pipeline import GenerationSettings, animate, image_to_model
from float_model.speech import SAMPLE_RATE
from float_model.video import write_video

from .clips import FPS, Clip, find_clips, read_frames, read_speech
from .metrics.videos import read_frames as read_video_frames

COMPARE_SUFFIX = "_compare"
COMPARE_BATCH = 25  # frames encoded at a time into the side-by-side video


def first_frame(clip: Clip, size: int) -> np.ndarray:
    """The clip's first frame at the model's image size, (size, size, 3) uint8 RGB."""
    return next(read_frames(clip.video, size, batch=1))[0]


def render_clip(model: FloatModel, clip: Clip, out: Path, settings: GenerationSettings) -> int:
    """Animates the clip's first frame with its speech into `out` (with the speech); returns the frame count."""
    size = model.config.motion_autoencoder.image_size
    speech, _ = read_speech(clip)
    frames, count = animate(model, image_to_model(first_frame(clip, size)), speech, SAMPLE_RATE, settings)
    write_video(out, frames, FPS, audio=speech[None], sample_rate=SAMPLE_RATE)
    return count


def side_by_side(clip: Clip, generated: Path, out: Path) -> None:
    """real | generated, frame by frame at the generated video's size, over the generated video's length
    (black where the real clip is shorter), with the clip's speech."""
    frames, _ = read_video_frames(generated)
    real, _ = read_video_frames(clip.video, frames.shape[1:3])
    shown = min(len(real), len(frames))
    left = np.zeros_like(frames)
    left[:shown] = real[:shown]

    def batches() -> Iterator[torch.Tensor]:
        for start in range(0, len(frames), COMPARE_BATCH):
            end = start + COMPARE_BATCH
            yield torch.from_numpy(np.concatenate([left[start:end], frames[start:end]], axis=2))

    speech, _ = read_speech(clip)
    write_video(out, batches(), FPS, audio=speech[None], sample_rate=SAMPLE_RATE)


def render_test(
    clips_dir: Path,
    models: Path,
    out: Path,
    seed: int = 0,
    nfe: int = 10,
    limit: int | None = None,
    compare: bool = False,
    emotion: str = "predict",
    device: str = "cpu",
) -> list[Path]:
    """Renders the clips (the first `limit`, by name) that have no output yet; returns the files written."""
    clips = find_clips(clips_dir)[:limit]
    out.mkdir(parents=True, exist_ok=True)
    settings = GenerationSettings(seed=seed, nfe=nfe, emotion=emotion)
    model = None  # loaded only when something is left to render
    written = []
    for clip in clips:
        video, comparison = out / f"{clip.name}.mp4", out / f"{clip.name}{COMPARE_SUFFIX}.mp4"
        if not video.exists():
            if model is None:
                chosen = emotion not in ("predict", "per-window")
                model = load_float_model(models, emotion_encoder=False if chosen else None, device=device)
            start = time.perf_counter()
            count = render_clip(model, clip, video, settings)
            print(f"{clip.name}: {count} frames in {time.perf_counter() - start:.1f} s -> {video}")
            written.append(video)
        else:
            print(f"{clip.name}: {video} exists, skipped")
        if compare and not comparison.exists():
            side_by_side(clip, video, comparison)
            written.append(comparison)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.render_test", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, required=True, help="folder of prepared clips (<name>.mp4 + <name>.wav)")
    parser.add_argument("--models", type=Path, required=True, help="FLOAT model folder or checkpoint file (e.g. an exported run)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the renders")
    parser.add_argument("--seed", type=int, default=0, help="noise seed, the same for every clip")
    parser.add_argument("--nfe", type=int, default=10, help="vector-field evaluations per 2 s chunk")
    parser.add_argument("--limit", type=int, help="render only the first N clips (by name)")
    parser.add_argument("--side-by-side", action="store_true", help=f"also write <name>{COMPARE_SUFFIX}.mp4: real | generated")
    parser.add_argument("--emotion", default="predict", choices=["predict", "per-window", *EMOTIONS], help="predicted from speech, or chosen")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        render_test(args.clips, args.models, args.out, args.seed, args.nfe, args.limit, args.side_by_side, args.emotion, args.device)
    except (CheckpointError, MediaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
