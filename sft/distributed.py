"""The one collective SpIEL needs: averaging growth statistics over data-parallel ranks, so that
every rank makes the identical selection (the reference code did not, and ranks diverged)."""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_reduce_mean_(tensor: Tensor) -> Tensor:
    """Average ``tensor`` in place over all ranks (a no-op outside ``torch.distributed``).

    The mean matches DDP's gradient averaging, so statistics equal one process at the global
    batch whose loss is the mean over ranks."""
    size = world_size()
    if size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(size)
    return tensor
