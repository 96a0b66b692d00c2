"""Score generated videos against the real ones with the paper's metrics, as far as their weights are at hand.

    python -m training.evaluate --generated renders/ --real clips/test --weights eval_weights/ --out report.json

Videos are paired by name (`<name>.mp4` in both folders; e.g. the output of `training.render_test`
against the prepared clips it was rendered from) and read at one frame size, the generated videos' by
default. Each metric needs pre-trained networks that are not shipped (their licences and sizes forbid
it) and never downloaded: put the files, under the names they are distributed with, in one folder given
by --weights or $FLOAT_EVAL_WEIGHTS. A metric whose file is missing is skipped, and the report says
which file, where to put it and where it comes from (`--list` prints all of them). The report, printed
and written as JSON, gives each metric's values or why it was skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from float_model.media import MediaError

from .metrics import METRICS, WEIGHTS_ENV, MetricResult, VideoPairs, pair_videos, run_metric, weights_folder


def parse_metrics(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(METRICS)}")
    return names


def evaluate(
    generated: Path,
    real: Path,
    metrics: list[str],
    weights: Path | None = None,
    device: str = "cpu",
    size: int | None = None,
) -> tuple[dict, list[MetricResult]]:
    """Runs the chosen metrics on the pairs of the two folders; returns the report (JSON-ready) and the results."""
    pairs: VideoPairs = pair_videos(generated, real, (size, size) if size else None)
    folder = weights_folder(weights)
    results = [run_metric(METRICS[name], pairs.real, pairs.generated, folder, torch.device(device)) for name in metrics]
    report = {
        "generated": str(generated),
        "real": str(real),
        "weights": str(folder) if folder else None,
        "device": device,
        "frame_size": list(pairs.real.size),
        "pairs": pairs.names,
        "only_generated": pairs.only_generated,
        "only_real": pairs.only_real,
        "metrics": {result.name: result.to_json() for result in results},
    }
    return report, results


def format_report(report: dict, results: list[MetricResult]) -> str:
    height, width = report["frame_size"]
    lines = [f"{len(report['pairs'])} pairs at {width}x{height} (generated: {report['generated']}, real: {report['real']})"]
    for side in ("only_generated", "only_real"):
        if report[side]:
            lines.append(f"  not paired, {side.replace('_', ' ')}: {', '.join(report[side])}")
    for result in results:
        if result.status == "ok":
            values = ", ".join(f"{name} {value:.4f}" for name, value in result.score.values.items())
            counts = ", ".join(f"{count} {what.replace('_', ' ')}" for what, count in result.score.counts.items())
            lines.append(f"  {result.name:<6} {values}   ({counts}; {result.seconds:.1f} s)")
            lines.extend(f"         note: {note}" for note in result.score.notes)
        else:
            lines.append(f"  {result.name:<6} {result.status}: {result.reason}")
    return "\n".join(lines)


def describe_weights() -> str:
    """Every metric's weight files: name, origin, conversion."""
    lines = [f"Weight files, looked up in --weights DIR or ${WEIGHTS_ENV}:"]
    for metric in METRICS.values():
        lines.append(f"  {metric.name}: {metric.description}")
        for file in metric.weights:
            lines.append(f"    {file.name}: {file.origin}")
            if file.conversion:
                lines.append(f"      ({file.conversion})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", type=Path, help="folder of generated <name>.mp4")
    parser.add_argument("--real", type=Path, help="folder of real <name>.mp4 (prepared clips, with <name>.wav for lip sync)")
    parser.add_argument("--weights", type=Path, help=f"folder of the metrics' weight files (default: ${WEIGHTS_ENV})")
    parser.add_argument("--metrics", default=",".join(METRICS), help=f"comma-separated, from {','.join(METRICS)} (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, help="evaluate at this square frame size (default: the generated videos' size)")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--list", action="store_true", help="print the weight files each metric needs, and exit")
    args = parser.parse_args(argv)
    if args.list:
        print(describe_weights())
        return 0
    if args.generated is None or args.real is None:
        parser.error("--generated and --real are required")
    try:
        report, results = evaluate(args.generated, args.real, parse_metrics(args.metrics), args.weights, args.device, args.size)
    except (MediaError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(report, results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
