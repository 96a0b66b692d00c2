"""What a run must keep to continue exactly: EMA weights, and atomic checkpoints of the whole training state.

A checkpoint holds the model (unwrapped from DDP), its EMA, the optimiser, the gradient scaler, every RNG
state, the step and the resolved configuration. Only rank 0 writes; files are written to a temporary
name and renamed, `latest.txt` names the newest, and the oldest beyond `keep` are removed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


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


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write state atomically as step_<step>.pt, point latest.txt at it, remove all but the newest `keep`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:09d}.pt"
    temporary = folder / f".{path.name}.part"
    torch.save({**state, "step": step, "rng": rng_states()}, temporary)
    os.replace(temporary, path)
    pointer = folder / ".latest.txt.part"
    pointer.write_text(path.name)
    os.replace(pointer, folder / "latest.txt")
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


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
