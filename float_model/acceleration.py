"""Optional `torch.compile` of the two networks that run in loops: the FMT (every ODE evaluation) and
the decoder (every frame batch).

On CUDA the FMT is compiled with mode "reduce-overhead", which records CUDA graphs: its input shapes
never change within a clip (B x 60 frames), so each evaluation replays one graph instead of
launching hundreds of small kernels. Compilation happens at the first call; if it fails (no C++
compiler, no Triton, an unsupported device or PyTorch build), that network falls back to eager
mode with one warning and the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .model import FloatModel

log = logging.getLogger(__name__)


class CompiledOrEager:
    """A module's forward compiled on first use, or its eager forward when compiling fails."""

    def __init__(self, module: nn.Module, **options: Any):
        self.name = type(module).__name__
        self.eager: Callable[..., Any] = module.forward
        self.compiled: Callable[..., Any] | None = torch.compile(self.eager, **options)
        # CUDA graphs reuse their output memory at the next replay, but solvers keep earlier
        # velocities (RK4's k1..k4), so outputs are copied out.
        self.copy_outputs = options.get("mode") == "reduce-overhead"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                out = self.compiled(*args, **kwargs)
                return out.clone() if self.copy_outputs else out
            except Exception as error:  # compiler or backend missing: any failure means "run eagerly"
                log.warning("torch.compile of the %s failed (%s: %s); running it without compilation", self.name, type(error).__name__, str(error).splitlines()[0] if str(error) else "")
                self.compiled = None
        return self.eager(*args, **kwargs)


def compile_model(model: FloatModel) -> FloatModel:
    """Compile the FMT and the decoder in place (state dict and parameters unchanged); returns the model.
    Compiling a compiled model changes nothing."""
    if isinstance(model.fmt.forward, CompiledOrEager):
        return model
    if not hasattr(torch, "compile"):
        log.warning("this PyTorch has no torch.compile; running without compilation")
        return model
    cuda = model.device.type == "cuda"
    model.fmt.forward = CompiledOrEager(model.fmt, mode="reduce-overhead" if cuda else "default", dynamic=False)
    decoder = model.motion_autoencoder.dec
    decoder.forward = CompiledOrEager(decoder, dynamic=False)
    return model
