"""Launching a sweep's workers: how many (`--workers auto`), on which devices, and
`spawn_workers`, which starts them as `archsearch sweep worker` processes and reports the
study's progress until they exit. Each worker runs the loop of `runner.py`."""

from __future__ import annotations

import ctypes
import datetime as _dt
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import optuna
import torch

from .._io import make_dirs, os_error
from ..data.stream import DATA_WORKERS_ENV
from ..errors import ArchsearchError
from ..names import parse_target, split_proposer
from ..train import resolve_device
from .plan import Log, _stderr
from .runner import _Interrupted, status
from .storage import STORAGE_ENV, describe

AUTO_CPU_WORKERS = 8  # the most single-machine CPU workers `--workers auto` starts (each loads the data)
AUTO_WORKERS_PER_GPU = 4  # `--workers auto` on CUDA, for nets on small images (CIFAR, digits)
SMALL_IMAGES = 64  # the largest image side that counts as small


def spec_input_size(spec) -> int:
    """The largest image side among the networks a sweep spec trains (its target's, or its
    table rows' datasets)."""
    targets = [parse_target(spec.target)] if spec.target else []
    targets += [split_proposer(row["from"])[1] for row in spec.rows or []]
    return max((t.input_size for t in targets), default=32)


def resolve_workers(workers: int | str, devices: str | None, device: str, input_size: int = 32,
                    nproc: int = 1) -> tuple[int, str | None]:
    """(workers, devices) for `--workers`: an integer is taken as it is; with `--devices`, one
    worker per listed device; `auto` is `auto_workers` for this machine's cores and GPUs."""
    if workers != "auto":
        return int(workers), devices
    if devices:
        return max(1, len([d for d in devices.split(",") if d.strip()])), devices
    gpus = torch.cuda.device_count() if resolve_device(device).type == "cuda" else 0
    return auto_workers(os.cpu_count() or 1, gpus, input_size, nproc, device_named=device != "auto")


def auto_workers(cpus: int, gpus: int, input_size: int = 32, nproc: int = 1,
                 device_named: bool = False) -> tuple[int, str | None]:
    """(workers, devices) of `--workers auto` on a machine with `cpus` cores and `gpus` visible
    CUDA GPUs (0: the workers train on the CPU); `device_named`: one GPU was named (`cuda:1`):
    - on CPU, one single-thread worker per core, at most AUTO_CPU_WORKERS (on the 2-core box,
      2 workers of 1 thread ran 1.23x the trials per hour of 1 worker of 2 threads);
    - on CUDA, AUTO_WORKERS_PER_GPU workers on each visible GPU (or on the one GPU named),
      for nets on small images (side <= SMALL_IMAGES), with at least 2 CPU cores a worker: on
      one H200 the quickstart grid ran 1.13x the trials per hour of one worker (1.27x under
      MPS); one worker per GPU for larger images;
    - for trials that take `nproc` GPUs each (`train.nproc` > 1), one worker per group of
      `nproc` GPUs: worker i on cuda:(i * nproc), whose trials run on GPUs i*nproc .. +nproc-1
      (`runner.train_processes`).
    Measurements: benchmarks/results/{sweep_throughput,gpu_sharing}.jsonl."""
    if gpus == 0:
        return max(1, min(AUTO_CPU_WORKERS, cpus)), None
    n = 1 if device_named else gpus
    if nproc > 1:
        groups = n // nproc
        return (groups, ",".join(str(g * nproc) for g in range(groups))) if groups > 1 else (1, None)
    per = AUTO_WORKERS_PER_GPU if input_size <= SMALL_IMAGES else 1
    per = max(1, min(per, cpus // (2 * n)))
    if n > 1:
        return n * per, ",".join(map(str, range(n)))  # worker i on GPU i mod n
    return per, None


def _worker_devices(devices: str | None, workers: int, device: str) -> list[str]:
    if devices:
        ids = [d.strip() for d in devices.split(",") if d.strip()]
        if not ids:
            raise ArchsearchError("--devices must list device ids like 0,1")
        return [f"cuda:{ids[i % len(ids)]}" if ids[i % len(ids)].isdigit() else ids[i % len(ids)]
                for i in range(workers)]
    return [device] * workers


def spawn_workers(study: optuna.Study, plan: dict, storage: str, workdir: Path, n: int, devices: list[str],
                  threads: int | None, data_dir: str | None, log: Log = _stderr, poll: float = 2.0,
                  artifacts: str | None = None) -> int:
    """Start N `archsearch sweep worker` processes (own process groups, logs in workdir/logs),
    report progress from the storage until they exit. Returns how many exited badly."""
    logs = make_dirs(workdir / "logs")
    procs = []
    preexec = _stop_with_parent()
    for i in range(n):
        # the storage URL may hold a password: it goes through the environment, which only this
        # user can read (/proc/PID/environ), not the command line, which every user sees in `ps`
        cmd = [sys.executable, "-m", "archsearch", "sweep", "worker",
               "--study", study.study_name, "--workdir", str(workdir), "--device", devices[i], "--quiet"]
        if threads:
            cmd += ["--threads", str(threads)]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        if artifacts:
            cmd += ["--artifacts", artifacts]
        try:
            f = open(logs / f"worker-{i}.log", "ab")
            f.write(f"\n=== {_dt.datetime.now().isoformat(timespec='seconds')} {shlex.join(cmd)} "
                    f"(storage: {describe(storage)}, from ${STORAGE_ENV})\n".encode())
            f.flush()
        except OSError as e:
            raise os_error(e, logs / f"worker-{i}.log") from None
        env = {**os.environ, STORAGE_ENV: storage}
        # a streamed dataset's decoder processes: each worker gets its share of the cores, not
        # one per core each (N workers x 8 decoders on a 16-core machine)
        env.setdefault(DATA_WORKERS_ENV, str(max(0, (threads or 1) - 1)))
        procs.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                       preexec_fn=preexec), f))
    log(f"started {n} workers (logs: {logs}/worker-*.log)")
    last = ""
    try:
        while any(p.poll() is None for p, _ in procs):
            time.sleep(poll)
            line = status(study, plan).line(n)
            if line != last:
                log(f"[sweep] {line}")
                last = line
    except KeyboardInterrupt:
        log("interrupted: stopping the workers (their running trials are requeued) ...")
        for p, _ in procs:
            if p.poll() is None:  # SIGTERM: a worker started where SIGINT is ignored (nohup, &) still stops
                p.send_signal(signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise _Interrupted("interrupted") from None
    finally:
        for _, f in procs:
            f.close()
    bad = [i for i, (p, _) in enumerate(procs) if p.returncode != 0]
    for i in bad:
        log(f"worker {i} exited with {procs[i][0].returncode}; see {logs}/worker-{i}.log")
    return len(bad)


def _stop_with_parent() -> Callable[[], None] | None:
    """For a spawned worker, run between fork and exec (Linux): SIGTERM when the `sweep run`
    that started it dies, even by SIGKILL, so that it requeues its trial and stops instead of
    running on as an orphan beside the workers of the next `sweep run`. prctl is looked up
    here, before the fork: the child of a process with threads (torch's) may only make the
    system call itself."""
    if not sys.platform.startswith("linux"):
        return None
    prctl, pr_set_pdeathsig, sigterm = ctypes.CDLL(None, use_errno=True).prctl, 1, int(signal.SIGTERM)
    return lambda: prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


__all__ = ["auto_workers", "resolve_workers", "spec_input_size", "spawn_workers", "set_threads", "AUTO_CPU_WORKERS",
           "AUTO_WORKERS_PER_GPU", "SMALL_IMAGES"]
