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
  every process can read (one file system for all machines); the same command resumes;
- the processes meet in short, interruptible steps and wait at most PEER_TIMEOUT_S for each
  other (`_join`); torchrun's variables in a process that torchrun did not start are refused.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

import torch

from .errors import ArchsearchError, clip


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


def launched_by_torchrun() -> bool:
    """Whether torchrun's agent started this process (it sets TORCHELASTIC_RUN_ID for its workers)."""
    return torch.distributed.is_torchelastic_launched()


def current() -> Dist:
    """This process's place in a torchrun job (world 1 outside one).

    WORLD_SIZE > 1 in a process that torchrun did not start is a leftover of another job (a
    shell that once ran one, a batch script): joining would wait for peers that never come, so
    it is refused at once, naming the variables, rather than ignored (a run that was meant to
    be distributed would then silently train alone)."""
    world = _env_int("WORLD_SIZE") or 1
    if world <= 1:
        return SINGLE
    if not launched_by_torchrun():
        names = [n for n in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if n in os.environ]
        raise ArchsearchError(f"torchrun's variables are set ({', '.join(f'{n}={os.environ[n]}' for n in names)}) "
                              f"but torchrun did not start this process: it would wait for {world - 1} other "
                              f"process{'es that never come' if world > 2 else ' that never comes'}. Run `unset {' '.join(names)}` for one process, or "
                              "use --nproc N (or torchrun) for several")
    rank, local = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None or local is None or not 0 <= rank < world:
        raise ArchsearchError(f"WORLD_SIZE={world} but RANK/LOCAL_RANK are missing or out of range: start several "
                              "processes with torchrun (or archsearch train --nproc N)")
    return Dist(rank=rank, world=world, local_rank=local)


# How long a process waits for the others to join: the ranks start together, so a peer that
# has not come in 5 minutes is not coming. Once all are in, a collective (or the store behind
# it) waits torch's default 30 minutes: rank 0 alone writes checkpoints, and a first run may
# build a large data index while the others wait at a barrier.
PEER_TIMEOUT_S = 300
COLLECTIVE_TIMEOUT_S = 1800
_NOTICE_S = 5  # a wait longer than this is said on stderr, once
_STEP_S = 1  # a probe of the store's port (a blocking call: no signal handler runs during it)


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
        torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", store=_join(dist),
                                             rank=dist.rank, world_size=dist.world,
                                             timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S),
                                             device_id=dev if dev.type == "cuda" else None)
    return dev


def _join(dist: Dist) -> torch.distributed.Store:
    """Meet the job's other processes in torch's TCP store, waiting in short steps, so that
    Ctrl-C and SIGTERM (handled in Python, between the steps) can end the wait, which says
    what it waits for and gives up after PEER_TIMEOUT_S. torch's own env:// rendezvous blocks
    in C++ for up to its timeout, deaf to both. All processes are there when this returns, so
    `init_process_group` then connects at once."""
    addr, port = os.environ.get("MASTER_ADDR"), _env_int("MASTER_PORT")
    if not addr or port is None or not 0 < port < 65536:
        raise ArchsearchError(f"MASTER_ADDR={addr} MASTER_PORT={port}: a host and a port in [1, 65535] are needed "
                              "(torchrun sets them); start several processes with torchrun or archsearch train --nproc N")
    where, start, said = f"{addr}:{port}", time.monotonic(), False

    def wait(what: str) -> None:
        nonlocal said
        waited = time.monotonic() - start
        if waited > PEER_TIMEOUT_S:
            raise ArchsearchError(f"rank {dist.rank}: {what} at {where} did not come within {PEER_TIMEOUT_S} s; "
                                  "check that every process of the job was started (and is still running)")
        if waited > _NOTICE_S and not said:
            print(f"rank {dist.rank}: waiting for {what} at {where} (up to {PEER_TIMEOUT_S} s; Ctrl-C stops)",
                  file=sys.stderr, flush=True)
            said = True
        time.sleep(0.2)

    # torchrun's agent serves the store to its workers; otherwise rank 0 does, as torch's env:// does
    serve = dist.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
    while not serve:  # probed with a plain socket: each failed TCPStore connect prints a C++ stack trace
        try:
            socket.create_connection((addr, port), timeout=_STEP_S).close()
            break
        except OSError:
            wait("the rendezvous store")
    try:  # a store that is up answers in milliseconds: a short limit, as this call blocks in C++
        store = torch.distributed.TCPStore(addr, port, dist.world, serve, timedelta(seconds=10), wait_for_workers=False)
    except RuntimeError as e:  # DistNetworkError: (serving) the port is taken, or not a store there
        raise ArchsearchError(f"rank {dist.rank} cannot {'serve' if serve else 'reach'} the rendezvous at {where}: "
                              f"{clip(e, 160)}") from None
    store.set_timeout(timedelta(seconds=PEER_TIMEOUT_S))
    key = "archsearch/joined/" + os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")  # a restarted job counts anew
    store.add(key, 1)
    while (n := store.add(key, 0)) < dist.world:
        wait(f"{dist.world - n} of {dist.world} training processes")
    store.set_timeout(timedelta(seconds=COLLECTIVE_TIMEOUT_S))  # all are in: from here on, collectives' limit
    return store


def check_batch(dist: Dist, batch_size: int) -> None:
    if dist.enabled and batch_size % dist.world:
        raise ArchsearchError(f"batch {batch_size} does not split evenly over {dist.world} processes; "
                              f"use a multiple of {dist.world}")


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command that runs `archsearch ARGS` as `nproc` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "archsearch", *args]


__all__ = ["Dist", "SINGLE", "PEER_TIMEOUT_S", "current", "init", "check_batch", "launched_by_torchrun",
           "torchrun_command"]
