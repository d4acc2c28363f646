"""torchrun / DDP plumbing: process group from the environment, gathers across ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun describes (WORLD_SIZE > 1); gloo on CPU, NCCL on CUDA."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def gather(tensor: torch.Tensor, context: DistContext) -> torch.Tensor:
    """Concatenate every rank's tensor; gradients flow back to the owning rank."""
    if not context.enabled:
        return tensor
    if tensor.requires_grad:
        return torch.cat(dist_nn.all_gather(tensor))
    parts = [torch.empty_like(tensor) for _ in range(context.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def barrier(context: DistContext) -> None:
    """Every rank waits here for the others (a no-op in one process)."""
    if context.enabled:
        dist.barrier()


def shutdown(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        barrier(context)
        dist.destroy_process_group()
