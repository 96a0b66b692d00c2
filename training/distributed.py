"""One process or many: what torchrun's environment says, and the few collective operations training needs.

`python -m training.train_fmt` is one process (CPU or one GPU); `torchrun --nproc_per_node=N -m
training.train_fmt` starts N, each seeing RANK, LOCAL_RANK and WORLD_SIZE. NCCL joins GPUs, gloo CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def start() -> Processes:
    """Join the process group when started by torchrun; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(rank, world_size, device)


def stop() -> None:
    """Leave the process group together: every rank waits for the others first, so that none tears its side
    down while a partner still talks to it. Drop DDP wrappers before calling this."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar over all processes (for logging the global loss)."""
    if not dist.is_initialized():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a `run.precision` setting on this process's device; None means plain float32."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
