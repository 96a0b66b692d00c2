"""Speed and memory of every FLOAT stage at full size, per device, dtype and decode batch size.

    python bench/bench.py                                   # CPU, float32 and bfloat16, synthesised weights
    python bench/bench.py --device cuda --dtypes float32 float16 bfloat16 --batch-sizes 1 8 32
    python bench/bench.py --models models/float             # the real weights (same cost)
    python bench/bench.py --device cuda --compile           # with torch.compile (warm-up includes compiling)

Each stage runs once to warm up, then --repeats times; the table shows the median. "End to end" is a
real `animate` call on a 2.58 s clip (65 frames, the official timing's clip) with NFE 10 and guidance,
frames decoded at the largest batch size, divided by the clip's length. Half-precision rows also
report the PSNR of their decoded frames (clamped to [-1, 1]) against float32's.
Prints a Markdown table with the machine it ran on.
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from float_model import FloatConfig, load_float_model
from float_model.acceleration import compile_model
from float_model.audio import normalize_waveform
from float_model.pipeline import GenerationSettings, animate
from float_model.sampling import sample_motion

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(device: torch.device) -> str:
    ram = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        return f"{ram:.0f} MB RAM, {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB VRAM"
    return f"{ram:.0f} MB RAM"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.float().clamp(-1, 1) - b.float().clamp(-1, 1)).double().pow(2).mean().item()
    return 10 * math.log10(4 / mse) if mse > 0 else math.inf


def bench_dtype(models: Path, device: torch.device, dtype: torch.dtype, batch_sizes: list[int], repeats: int, reference_frames: torch.Tensor | None, compile: bool = False):
    model = load_float_model(models, device=device, dtype=dtype)
    if compile:
        compile_model(model)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 512, 512, generator=g) * 2 - 1
    seconds = 10.0
    waveform = normalize_waveform(torch.randn(1, int(seconds * 16000), generator=g))
    frames = int(seconds * 25)
    encoded = model.encode_image(image)
    reference = model.motion_latent(encoded.motion_coefficients)
    audio = model.audio_features(waveform, frames)
    emotion = model.emotion(waveform)
    rows = [
        ("encode image", timed(lambda: model.encode_image(image), device, repeats), "per image"),
        ("audio features", timed(lambda: model.audio_features(waveform, frames), device, repeats) / seconds, "per second of audio"),
        ("emotion", timed(lambda: model.emotion(waveform), device, repeats) / seconds, "per second of audio"),
        ("sampling, NFE 10, guided", timed(lambda: sample_motion(model, audio[:, :50], reference, emotion, nfe=10, seed=0), device, repeats), "per 50-frame chunk"),
    ]
    motion = reference[:, None] + 0.1 * torch.randn(1, max(batch_sizes) * 2, reference.shape[-1], generator=g).to(reference)
    decoded = None
    for batch in batch_sizes:
        count = 2 * batch
        seconds_per_frame = timed(lambda: model.decode(encoded.identity_latent, encoded.features, motion[:, :count], batch_size=batch), device, repeats) / count
        rows.append((f"decode, batch {batch}", seconds_per_frame, f"per frame ({1 / seconds_per_frame:.1f} frames/s)"))
    decoded = model.decode(encoded.identity_latent, encoded.features, motion[:, :4], batch_size=1)

    clip = 0.1 * torch.randn(41280, generator=g)
    settings = GenerationSettings(nfe=10, seed=0, decode_batch_size=max(batch_sizes))

    def end_to_end() -> None:
        stream, _ = animate(model, image, clip, 16000, settings)
        for _ in stream:
            pass

    rows.append(("end to end (2.58 s clip)", timed(end_to_end, device, max(1, repeats // 3)) / 2.58, "per second of video"))
    quality = psnr(decoded, reference_frames) if reference_frames is not None else None
    return rows, decoded.float().cpu(), quality, peak_memory(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, help="model folder (default: synthesise random weights once)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["float32", "bfloat16"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the FMT and the decoder first")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as scratch:
        models = args.models
        if models is None:
            from float_model.synthetic import write_official_layout

            models = write_official_layout(Path(scratch), FloatConfig())
        results, reference_frames = {}, None
        for name in sorted(args.dtypes, key=lambda n: n != "float32"):  # float32 first: the PSNR reference
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            rows, frames, quality, memory = bench_dtype(models, device, DTYPES[name], args.batch_sizes, args.repeats, reference_frames, args.compile)
            if name == "float32":
                reference_frames = frames
            results[name] = (rows, quality, memory)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    compiled = ", torch.compile" if args.compile else ""
    print(f"{where}; torch {torch.__version__}{compiled}; full-size model, synthesised weights; median of {args.repeats}.\n")
    names = list(results)
    print("| stage | " + " | ".join(names) + " | unit |")
    print("|---|" + "---|" * len(names) + "---|")
    for i, (stage, _, unit) in enumerate(results[names[0]][0]):
        cells = " | ".join(f"{results[n][0][i][1]:.3f} s" for n in names)
        print(f"| {stage} | {cells} | {unit.split(' (')[0]} |")
    print("| frames vs float32, PSNR | " + " | ".join("reference" if results[n][1] is None else f"{results[n][1]:.1f} dB" for n in names) + " | clamped to [-1, 1] |")
    print("| peak memory (process) | " + " | ".join(results[n][2] for n in names) + " | cumulative |")


if __name__ == "__main__":
    main()
