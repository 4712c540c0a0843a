"""Multi-process (DDP) support: works unchanged under ``torchrun`` (RANK / WORLD_SIZE set).

One process per device; NCCL on CUDA, Gloo on CPU. Each process reads its own shard of every
epoch (``DistributedSampler``); gradients of the network being trained are averaged by DDP.
Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from unseg.devices import resolve_device as resolve_any_device


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: rank, world size, local rank, and whether DDP is on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_env() -> DistributedContext:
    """Context described by torchrun's environment variables (single process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistributedContext(rank=rank, world_size=world, local_rank=local)


def resolve_device(name: str, context: DistributedContext) -> torch.device:
    """The device of this process (:func:`unseg.devices.resolve_device`): ``auto`` -> cuda if
    available else cpu; a bare ``cuda`` -> the local rank's GPU under DDP (``cuda:0`` alone);
    ``cuda:N`` as given. A CUDA device is also made the current one (NCCL needs it)."""
    device = resolve_any_device(name, context.local_rank if context.enabled else None)
    if device.type == "cuda":
        torch.cuda.set_device(device.index)
    return device


def init_distributed(context: DistributedContext, device: torch.device) -> None:
    """Start the process group (NCCL on cuda, Gloo on cpu) if running under DDP."""
    if context.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=context.rank, world_size=context.world_size)


def wrap_model(model: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """DDP wrapper (``find_unused_parameters``: the generator's IoU head gets no gradient)."""
    if not context.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def barrier(context: DistributedContext) -> None:
    """Wait for all processes (no-op without DDP)."""
    if context.enabled and dist.is_initialized():
        dist.barrier()


def mean_across(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Element-wise mean of ``values`` over all processes (``values`` itself without DDP): one
    all-reduce for a whole tensor of step values."""
    if not context.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / context.world_size


def shutdown(context: DistributedContext) -> None:
    """Destroy the process group if this process started one."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
