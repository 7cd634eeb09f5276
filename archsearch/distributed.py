"""One training spread over several processes: PyTorch's DistributedDataParallel under torchrun.

`archsearch train ... --nproc N` re-runs the same command under
`python -m torch.distributed.run --standalone --nproc-per-node N`; several machines start
torchrun themselves with a rendezvous (README "Large data and several GPUs"). Inside, each
process reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) through `current()`:

- one process per GPU (`cuda:LOCAL_RANK`, NCCL), or N CPU processes (gloo);
- the data sharded: every process draws the same permutation and the same crops and flips
  for each *global* batch (one generator, one seed) and keeps its contiguous slice of it,
  so the global batch, its augmentation and the order are those of a single-process run
  (the last incomplete global batch is dropped, so that every process steps together);
- gradients averaged by DDP; batch norm statistics per process, as the paper's ImageNet
  code (`nn.DataParallel`, no synchronised BN), unless `sync_bn` (CUDA only: torch's
  `SyncBatchNorm` has no CPU kernel);
- loss, accuracy and the test count summed over the processes, so every process logs the
  same numbers; the test set is sharded the same way;
- the checkpoint, the result and the model written once, by rank 0, into a run folder that
  every process can read (one file system for all machines); the same command resumes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import ArchsearchError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This process's contiguous part of a global batch of `n` (equal parts when world divides n)."""
        per, extra = divmod(n, self.world)
        start = self.rank * per + min(self.rank, extra)
        return slice(start, start + per + (self.rank < extra))

    def sum_(self, *tensors: torch.Tensor) -> None:
        """All-reduce (sum) in place; nothing on one process."""
        if self.enabled:
            for t in tensors:
                torch.distributed.all_reduce(t)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


SINGLE = Dist()


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise ArchsearchError(f"${name} is {v!r}, not a whole number (set by torchrun)") from None


def current() -> Dist:
    """This process's place in a torchrun job (world 1 outside one)."""
    world = _env_int("WORLD_SIZE") or 1
    if world <= 1:
        return SINGLE
    rank, local = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None or local is None or not 0 <= rank < world:
        raise ArchsearchError(f"WORLD_SIZE={world} but RANK/LOCAL_RANK are missing or out of range: start several "
                              "processes with torchrun (or archsearch train --nproc N)")
    return Dist(rank=rank, world=world, local_rank=local)


def init(dist: Dist, device: str) -> torch.device:
    """Join the process group (once) and return this process's device."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if torch.cuda.device_count() <= dist.local_rank:
            raise ArchsearchError(f"local rank {dist.local_rank} has no GPU: this machine has "
                                  f"{torch.cuda.device_count()}; start at most that many processes on it")
        dev = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(dev)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                             device_id=dev if dev.type == "cuda" else None)
    return dev


def check_batch(dist: Dist, batch_size: int) -> None:
    if dist.enabled and batch_size % dist.world:
        raise ArchsearchError(f"batch {batch_size} does not split evenly over {dist.world} processes; "
                              f"use a multiple of {dist.world}")


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command that runs `archsearch ARGS` as `nproc` processes on this machine."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "archsearch", *args]


__all__ = ["Dist", "SINGLE", "current", "init", "check_batch", "torchrun_command"]
