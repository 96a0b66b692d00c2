"""Peak memory of a generation as the clip gets longer, default (windowed) vs official (one pass) mode.

Each measurement runs in a fresh process (peak RSS is per process): load the full-size model, animate
a portrait with N seconds of audio (audio features, emotion, all of the sampling), and stream the
frames into an mp4. Decoding is stopped after --frames frames: it works batch by batch, so its memory
does not depend on the clip's length, and all of it would take hours on a CPU. nfe does not change
memory either, so the default here is the smallest.

    python bench/long_audio_memory.py                     # synthesised weights, 30 s and 120 s
    python bench/long_audio_memory.py --models models/float --seconds 30 120 300

Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def measure(models: Path, seconds: float, official: bool, frames: int, nfe: int) -> dict:
    """Runs in the child process: one generation, returns its peak RSS and times."""
    from float_model import load_float_model
    from float_model.pipeline import GenerationSettings, animate
    from float_model.video import write_video

    torch.set_num_threads(2)
    model = load_float_model(models)
    image = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rate = 44100  # a typical file rate: the resampling is part of the run
    audio = 0.1 * torch.randn(1, int(seconds * rate), generator=torch.Generator().manual_seed(1))
    settings = GenerationSettings(nfe=nfe if not official else nfe + 1, seed=0, official=official)
    start = time.perf_counter()
    stream, total = animate(model, image, audio, rate, settings)
    sampled = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        write_video(Path(scratch) / "out.mp4", itertools.islice(stream, frames), 25, audio=audio, sample_rate=rate)
    return {
        "seconds": seconds,
        "official": official,
        "frames": total,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "conditioning_and_sampling_s": sampled - start,
        "decode_s": time.perf_counter() - sampled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, help="model folder (default: synthesise random weights once)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 120.0])
    parser.add_argument("--frames", type=int, default=50, help="frames decoded and written per run")
    parser.add_argument("--nfe", type=int, default=1, help="vector-field evaluations per chunk")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return

    with tempfile.TemporaryDirectory() as scratch:
        models = args.models
        if models is None:
            from float_model.config import FloatConfig
            from float_model.synthetic import write_official_layout

            models = write_official_layout(Path(scratch), FloatConfig())
        rows = []
        for official in (False, True):
            for seconds in args.seconds:
                job = dict(models=str(models), seconds=seconds, official=official, frames=args.frames, nfe=args.nfe)
                out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(rows[-1], file=sys.stderr)

    print(f"Peak RSS, full-size model, float32, CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads available, "
          f"torch {torch.__version__}); {args.frames} frames decoded, nfe {args.nfe}:\n")  # fmt: skip
    print("| mode | audio | motion frames | peak RSS | conditioning + sampling | growth vs shortest |")
    print("|---|---|---|---|---|---|")
    for official in (False, True):
        group = [r for r in rows if r["official"] == official]
        for row in group:
            growth = row["peak_rss_mb"] - group[0]["peak_rss_mb"]
            print(f"| {'official' if official else 'default'} | {row['seconds']:g} s | {row['frames']} | {row['peak_rss_mb']:.0f} MB "
                  f"| {row['conditioning_and_sampling_s']:.0f} s | {growth:+.0f} MB |")  # fmt: skip


if __name__ == "__main__":
    main()
