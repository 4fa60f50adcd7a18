"""Data parallel scoring across processes (``accelerate launch -m cvaudit run ...`` or torchrun).

Every process runs the same audit code; the engine splits the prompts that still
need scoring into contiguous, index-based shards (deterministic, and a group's
prompts stay together so their persona prefix is still shared), scores its own
and gathers everything back so each process continues with identical numbers.
Only the main process writes outputs (:func:`is_main_process`). Object
collectives go through a gloo group, which works for CPU and GPU runs alike.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")
_GLOO: Any = None


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a launched one."""
    return rank() == 0


def _group() -> Any:
    """Initialise the process group from the launcher's environment once; return a gloo group for objects."""
    global _GLOO
    import torch.distributed as dist

    if not dist.is_initialized():
        import torch

        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        # Gloo's worker threads must stop while the interpreter is still alive: left to
        # interpreter finalisation they can abort the process (SIGABRT, "terminate called
        # without an active exception") after a run that finished correctly.
        atexit.register(_shutdown)
    if _GLOO is None:
        _GLOO = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return _GLOO


def _shutdown() -> None:
    """Destroy the process group this module created (registered with atexit)."""
    global _GLOO
    import torch.distributed as dist

    _GLOO = None
    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at exit; the results are already written
            pass


def bounds(n: int, size: int | None = None, index: int | None = None) -> tuple[int, int]:
    """[start, end) of shard ``index`` of ``n`` items: contiguous, sizes differ by at most one."""
    size = world_size() if size is None else size
    index = rank() if index is None else index
    per, extra = divmod(n, size)
    start = index * per + min(index, extra)
    return start, start + per + (1 if index < extra else 0)


def shard(seq: Sequence[T]) -> list[T]:
    """This process's contiguous share of ``seq`` (all of it in a single-process run)."""
    start, end = bounds(len(seq))
    return list(seq[start:end])


def gather(items: list[T]) -> list[T]:
    """Concatenate every process's list in rank order, on every process (inverse of :func:`shard`)."""
    if world_size() == 1:
        return list(items)
    import torch.distributed as dist

    group = _group()
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, items, group=group)
    return [x for part in parts for x in part]


def broadcast(obj: T) -> T:
    """The main process's ``obj`` on every process (others pass anything, e.g. None)."""
    if world_size() == 1:
        return obj
    import torch.distributed as dist

    group = _group()
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier(group=_group())
