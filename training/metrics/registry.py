"""The metric registry's building blocks: what a metric needs, what it returns, and why it was skipped.

Every metric of the paper needs a pre-trained network that this project cannot ship (licences, size), so
each one declares the weight files it needs, under the names they are distributed with. `run_metric`
looks them up in one folder (`--weights DIR`, else $FLOAT_EVAL_WEIGHTS) and, when one is missing, skips
the metric with a reason that says which file, where to put it and where it comes from. Nothing is ever
downloaded: an evaluation that silently fetched a different network would give numbers that do not
compare with anyone else's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import safetensors.torch
import torch
from torch import nn

from .videos import Video

WEIGHTS_ENV = "FLOAT_EVAL_WEIGHTS"


class NotEnoughData(Exception):
    """Too few videos, frames or windows for a meaningful value; the message says how many are needed."""


class WeightsError(Exception):
    """A weights file is there but is not what the metric expects (wrong keys or shapes, not TorchScript, ...)."""


@dataclass(frozen=True)
class WeightFile:
    """A file a metric needs, under the name it is distributed with.

    convert_from names the original download when that one must not be loaded as it is (a pickle, which
    can run arbitrary code when loaded), and conversion says how to turn it into this file.
    """

    name: str
    origin: str
    convert_from: str | None = None
    conversion: str | None = None


@dataclass(frozen=True)
class MetricContext:
    """What a metric's compute function gets besides the videos: its weight files (by name) and the device."""

    weights: dict[str, Path]
    device: torch.device


@dataclass(frozen=True)
class Score:
    """A computed metric: named values (LSE has two, LSE-D and LSE-C), counts of what was measured, and
    notes on how far to trust the values (e.g. fewer samples than feature dimensions)."""

    values: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


Compute = Callable[[Sequence[Video], Sequence[Video], MetricContext], Score]


@dataclass(frozen=True)
class Metric:
    """One metric: its command-line name, what it measures, the weight files it needs, a check for the
    optional packages it needs (returns why it cannot run, or None), and compute(real, generated, context).
    real[i] and generated[i] are the two videos of pair i, at a common frame size."""

    name: str
    description: str
    weights: tuple[WeightFile, ...]
    compute: Compute
    missing_package: Callable[[], str | None] = lambda: None


@dataclass(frozen=True)
class MetricResult:
    """A metric's line in the report: "ok" with values, "skipped" with the reason, or "error" (a weights
    file that is there but unusable) with the message."""

    name: str
    status: Literal["ok", "skipped", "error"]
    score: Score | None = None
    reason: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict:
        entry: dict = {"status": self.status}
        if self.score is not None:
            entry.update(values=self.score.values, counts=self.score.counts, notes=list(self.score.notes))
        if self.reason is not None:
            entry["reason"] = self.reason
        entry["seconds"] = round(self.seconds, 3)
        return entry


def weights_folder(explicit: Path | None) -> Path | None:
    """The folder holding the metrics' weight files: the one given, else $FLOAT_EVAL_WEIGHTS, else None."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(WEIGHTS_ENV)
    return Path(from_env) if from_env else None


def _missing_file_reason(file: WeightFile, folder: Path | None) -> str:
    where = (
        f"in the weights folder {folder}"
        if folder is not None
        else f"in a weights folder (pass --weights DIR or set ${WEIGHTS_ENV})"
    )
    if folder is not None and file.convert_from and (folder / file.convert_from).is_file():
        return (
            f"found {file.convert_from} in {folder}, but it is a pickle, which this tool never loads (loading one can run "
            f"arbitrary code): {file.conversion}, and put {file.name} beside it"
        )
    reason = f"needs {file.name} {where}; it is {file.origin}"
    if file.conversion:
        reason += f"; {file.conversion}"
    return reason


def find_weights(metric: Metric, folder: Path | None) -> tuple[dict[str, Path], str | None]:
    """The metric's weight files found in `folder`, and the reason to skip the metric when any is missing."""
    found: dict[str, Path] = {}
    reasons = []
    for file in metric.weights:
        path = folder / file.name if folder is not None else None
        if path is not None and path.is_file():
            found[file.name] = path
        else:
            reasons.append(_missing_file_reason(file, folder))
    return found, "; and ".join(reasons) if reasons else None


def run_metric(metric: Metric, real: Sequence[Video], generated: Sequence[Video], folder: Path | None, device: torch.device) -> MetricResult:
    """Runs one metric, or says why it cannot run: a package or weights file missing, too little data,
    or a weights file that is not what the metric expects."""
    missing = metric.missing_package()
    if missing is not None:
        return MetricResult(metric.name, "skipped", reason=missing)
    weights, reason = find_weights(metric, folder)
    if reason is not None:
        return MetricResult(metric.name, "skipped", reason=reason)
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            score = metric.compute(real, generated, MetricContext(weights, device))
    except NotEnoughData as error:
        return MetricResult(metric.name, "skipped", reason=str(error), seconds=time.perf_counter() - start)
    except WeightsError as error:
        return MetricResult(metric.name, "error", reason=str(error), seconds=time.perf_counter() - start)
    return MetricResult(metric.name, "ok", score=score, seconds=time.perf_counter() - start)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch .pth/.pt file, without running pickled code
    (torch.load with weights_only=True; files saved on a GPU are mapped to the CPU)."""
    try:
        if path.suffix == ".safetensors":
            return safetensors.torch.load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch and safetensors raise several types for files they cannot read
        raise WeightsError(f"cannot read {path} as a state dict of tensors ({error})") from error
    if not isinstance(data, dict) or not all(isinstance(value, torch.Tensor) for value in data.values()):
        raise WeightsError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return data


def load_state(module: nn.Module, tensors: dict[str, torch.Tensor], path: Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Loads `tensors` into `module`, checking every key and shape, and says precisely what does not match.

    Keys under `ignore_prefixes` are in the distributed file but not used (e.g. a classifier head);
    BatchNorm's `num_batches_tracked` counters may be absent (files saved by old PyTorch versions).
    """
    expected = module.state_dict()
    used = {key: value for key, value in tensors.items() if not key.startswith(ignore_prefixes)}
    # In the module's and the file's own order: the first key named is then the first layer that differs.
    missing = [key for key in expected if key not in used and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in used if key not in expected]
    wrong_shape = [key for key in used if key in expected and used[key].shape != expected[key].shape]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        if wrong_shape:
            key = wrong_shape[0]
            problems.append(f"{len(wrong_shape)} of another shape (first: {key} {tuple(used[key].shape)}, expected {tuple(expected[key].shape)})")
        raise WeightsError(f"{path} is not the expected file for {type(module).__name__}: keys {'; '.join(problems)}")
    module.load_state_dict(used, strict=False)
