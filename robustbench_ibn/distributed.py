"""torch.distributed glue: ranks from torchrun's environment, and gathering per-rank predictions.

Launch with ``torchrun --nproc_per_node=N -m robustbench_ibn ...``: each rank evaluates every N-th batch
of the fixed batch grid (see :mod:`robustbench_ibn.state`), then all ranks exchange their batches so each
holds the whole result; rank 0 prints and writes it. Gloo on CPU, NCCL on CUDA.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["all_gather", "init_from_env", "is_main", "launch_rank"]


def init_from_env(device: torch.device) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (if any); returns ``(rank, world_size, device)``.

    Under torchrun with CUDA each rank takes the GPU of its ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def launch_rank() -> int:
    """This process's rank as torchrun set it (``$RANK``; 0 without torchrun), known before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` without a process group)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
