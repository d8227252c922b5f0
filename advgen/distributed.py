"""Data-parallel training under `torchrun`: the process group, each rank's share of a global batch, and
DDP wrappers.

Every rank builds the same global batch from (seed, step) and keeps its contiguous slice, so a run with
world size W and global batch B sees the same data as a single process with batch B; DDP averages the
ranks' gradients. Losses that are means over tokens are rescaled by the caller (see pretrain.py) so that
the average over ranks is the mean over the global batch's tokens. Outside `torchrun` (no WORLD_SIZE in
the environment, or 1) nothing here starts a process group and every function is the identity.
"""
import gc
import inspect
import os

import torch
import torch.distributed as dist
from torch import nn

from advgen.errors import AdvgenError


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group that `torchrun` describes (NCCL on CUDA, gloo on CPU) and return this rank's
    device: cuda:LOCAL_RANK on GPUs. A single process returns `device` unchanged."""
    if world_size() == 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Destroy the process group. Callers drop their DDP wrappers first: a DDP reducer freed after the group is
    destroyed can deadlock in the gloo group's destructor (seen under torchrun on CPU: rank 0 hung at exit), and
    a wrapper in a reference cycle is only freed by the collector."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def check_divides(batch: int, what: str) -> None:
    """A global batch must split evenly over the ranks (so that the mean of the ranks' means is the mean)."""
    w = world_size()
    if batch % w:
        raise AdvgenError(f"{what} {batch} does not divide over the world size {w}: choose a multiple of {w}")


def check_resumable(state: dict, run) -> None:
    """A checkpoint (which records its world size; none recorded = 1) resumes only with the same world size:
    the data each rank saw, and the RNG it drew from, depend on it."""
    saved, world = state.get("world_size", 1), world_size()
    if saved != world:
        raise AdvgenError(f"{run} was trained with world size {saved}; resume it with the same number of "
                          f"processes, not {world}")


def shard(rows: list) -> list:
    """This rank's contiguous slice of a global batch (whose length the world size divides)."""
    w, r = world_size(), rank()
    n = len(rows) // w
    return rows[r * n:(r + 1) * n]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate the ranks' (n, ...) tensors along dim 0, in rank order: the global batch's values."""
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def gather_objects(items: list) -> list:
    """Concatenate the ranks' lists (e.g. texts), in rank order."""
    if world_size() == 1:
        return items
    parts = [None] * world_size()
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def broadcast(value):
    """Rank 0's value (any picklable object) on every rank."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(scalars: dict) -> dict:
    """{name: float} averaged over the ranks (equal slices: the global batch's means)."""
    if world_size() == 1:
        return scalars
    values = gather(torch.tensor([list(scalars.values())], dtype=torch.float64)).mean(0)
    return dict(zip(scalars, values.tolist()))


class Call(nn.Module):
    """`Call(model)(fn, *args)` runs `fn(model, *args)`: a forward that DDP can wrap, for advgen's own forward
    passes (models.target_nll, models.teacher_forced_logprobs), which call the model's parts directly."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn, *args, **kwargs):
        return fn(self.model, *args, **kwargs)


def data_parallel(model: nn.Module, calls: bool = False):
    """`model` with DDP's gradient averaging when there are several ranks (itself otherwise). calls=True
    wraps it in Call first: the result runs `result(fn, *args)` = fn(model, *args). The model itself
    stays unwrapped for saving, sampling and scoring."""
    module = Call(model) if calls else model
    if world_size() == 1:
        return module
    device = next(model.parameters()).device
    # No buffer sync in forward: buffers here are constants (position ids), and a collective in every
    # forward would hang when only rank 0 runs one. (torch 2.13 renamed broadcast_buffers.)
    ddp = nn.parallel.DistributedDataParallel
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
    return ddp(module, device_ids=[device] if device.type == "cuda" else None, **{no_sync: False})
