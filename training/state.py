"""What a run keeps: EMA weights, atomic checkpoints of the whole training state, and its metrics log.

A checkpoint holds the model (unwrapped from DDP), its EMA, the optimisers, the gradient scaler, every RNG
state, the step and the resolved configuration. Only rank 0 writes; files are written to a temporary
name and renamed, `latest.txt` names the newest, and the oldest beyond `keep` are removed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .files import write_atomically

log = logging.getLogger("training")


class EMA:
    """Exponential moving average of a model's parameters, warming up as min(decay, (1 + n) / (10 + n))."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {name: p.detach().clone().float() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, parameter in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(parameter.detach().float(), 1 - decay)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = state["updates"]
        self.shadow = {name: value.float() for name, value in state["shadow"].items()}

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged values in place of the trained ones."""
        return {name: self.shadow.get(name, value).to(value.dtype) for name, value in model.state_dict().items()}


def rng_states() -> dict[str, Any]:
    _, keys, position, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(folder: Path, step: int, parts: dict[str, Any], config: dict[str, Any], keep: int) -> Path:
    """Write every part's state_dict() (model, EMA, optimisers, scaler ...), the step, the RNG states and the
    configuration atomically as step_<step>.pt, point latest.txt at it, and keep only the newest `keep`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:09d}.pt"
    state = {name: part.state_dict() for name, part in parts.items()} | {"config": config, "step": step, "rng": rng_states()}
    write_atomically(path, lambda temporary: torch.save(state, temporary))
    write_atomically(folder / "latest.txt", lambda temporary: temporary.write_text(path.name))
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


def resume(folder: Path, parts: dict[str, Any]) -> int:
    """Load the newest checkpoint in `folder` into the parts (by the names they were saved under) and restore
    the RNG states; returns its step, or 0 when there is none yet."""
    path = latest_checkpoint(folder)
    if path is None:
        return 0
    state = load_checkpoint(path)
    for name, part in parts.items():
        part.load_state_dict(state[name])
    set_rng_states(state["rng"])
    return state["step"]


def latest_checkpoint(folder: Path) -> Path | None:
    pointer = folder / "latest.txt"
    if not pointer.is_file():
        return None
    path = folder / pointer.read_text().strip()
    if not path.is_file():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is missing: remove latest.txt to start over")
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by save_checkpoint (read safely: tensors and plain values only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


class MetricsLog:
    """Rank 0's record of a run: stdout, metrics.jsonl in the run folder, TensorBoard when installed."""

    def __init__(self, folder: Path, tensorboard: bool):
        self.file = (folder / "metrics.jsonl").open("a")
        self.board = None
        if tensorboard:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(str(folder / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self.file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.file.flush()
        log.info("step %d  %s", step, "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        if self.board is not None:
            for name, value in metrics.items():
                self.board.add_scalar(name, value, step)
