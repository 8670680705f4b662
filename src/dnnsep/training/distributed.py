"""Multi-process training under ``torchrun``: process group set-up and the few collectives we need.

``torchrun --nproc_per_node N -m dnnsep.bin.train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init` reads them and joins the group
(NCCL on CUDA, gloo otherwise).  Without them everything runs as a single process and the
collectives below do nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import select_device
from ..errors import DnnsepError


@dataclass(frozen=True)
class Dist:
    """This process's place in the group: ``rank`` of ``world_size``; ``local_rank`` picks its GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init(device_name: str | None) -> tuple[Dist, torch.device]:
    """Join the torchrun process group if there is one; return it and this process's device.

    Under torchrun with CUDA, process ``local_rank`` uses ``cuda:<local_rank>``; otherwise
    ``device_name`` (``auto``, ``cpu``, ``cuda``, ``mps`` ...) as for a single process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist(), select_device(device_name)
    info = Dist(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = select_device(device_name)
    if device.type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise DnnsepError(
                f"LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} GPU(s): lower --nproc_per_node"
            )
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    elif device.type == "mps":
        raise DnnsepError("multi-process training is not supported on Apple MPS: use --device cpu or one process")
    if not dist.is_initialized():
        if device.type == "cuda":  # bound to this process's GPU: NCCL warns (and may hang) otherwise
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return info, device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(values: list[float], info: Dist, device: torch.device) -> list[float]:
    """Sum a few numbers over all processes (float64); identity for a single process."""
    return _all_reduce(values, info, device, "SUM")


def all_max(values: list[float], info: Dist, device: torch.device) -> list[float]:
    """The largest of each number over all processes (float64); identity for a single process."""
    return _all_reduce(values, info, device, "MAX")


def _all_reduce(values: list[float], info: Dist, device: torch.device, op: str) -> list[float]:
    if not info.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return t.tolist()


def all_true(flag: bool, info: Dist, device: torch.device) -> bool:
    """Whether ``flag`` holds in every process (so that all of them take the same branch)."""
    if not info.active:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def all_true_flags(flags: torch.Tensor, info: Dist) -> list[bool]:
    """Which of the 0/1 ``flags`` (an int tensor on this process's device) hold in every process.

    One host sync (the read), and no other: the all-reduce is queued on the device.
    """
    if info.active:
        dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    return [bool(f) for f in flags.tolist()]


def barrier(info: Dist) -> None:
    if info.active:
        dist.barrier()


def agree(error: DnnsepError | None, info: Dist) -> None:
    """Raise ``error`` in every process if any process found one (so that none is left waiting).

    A process that found no error of its own raises a ``DnnsepError`` with the first one's message.
    """
    if not info.active:
        if error is not None:
            raise error
        return
    messages: list[str | None] = [None] * info.world_size
    dist.all_gather_object(messages, None if error is None else str(error))
    if error is not None:
        raise error
    first = next((m for m in messages if m), None)
    if first:
        raise DnnsepError(first)
