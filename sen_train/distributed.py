"""Multi-process training helpers (torchrun / DDP): SDM, ID and triplet see the global batch.

The reference code computes its batch-level losses on each GPU's local slice, so results drop when
a batch is split across GPUs. Here features are all-gathered *with gradients* before those losses:
every rank computes the same global loss, and all_gather's backward (a reduce-scatter sum) times
DDP's gradient average gives exactly the single-process gradient of the global batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> tuple[int, int]:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return world()


def is_main() -> bool:
    return world()[0] == 0


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Concatenate `t` from every rank along dim 0, keeping the autograd graph."""
    if world()[1] == 1:
        return t
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t), dim=0)


def gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenate `t` (no gradient) from every rank along dim 0."""
    if world()[1] == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world()[1])]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
