"""One trial's network over several processes (`train.nproc > 1`): `archsearch train` under
torchrun in a subprocess, on a group of GPUs, stopped with its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from ..errors import ArchsearchError, EnvironmentFailure, clip
from ..spec import ArchSpec
from ..train import load_result
from .points import target_net

MACHINE_SIGNS = ("CUDA error", "out of memory", "device-side", "No space left")  # in a message: the machine failed


def train_processes(plan: dict, arch: ArchSpec, *, kind: str, seed: int, run: Path, ctx):
    """Train one trial's network over `train.nproc` processes: `archsearch train --spec ...
    --nproc N` in a subprocess (torchrun, DistributedDataParallel). A worker on `cuda:K` gives it
    the N GPUs from its K-th visible one on (CUDA_VISIBLE_DEVICES); any other worker, the GPUs
    it sees. Its result is read back; its first error line becomes the trial's."""
    tr = plan["spec"]["train"]
    device, env = ctx.device, None
    if device.startswith("cuda:"):
        device, env = "cuda", {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpu_group(ctx.device, int(tr["nproc"])))}
    run.mkdir(parents=True, exist_ok=True)
    arch.save(run / "trial-spec.json")
    cmd = [sys.executable, "-m", "archsearch", "train", plan["spec"]["target"], "--spec", str(run / "trial-spec.json"),
           "--schedule", kind, "--preset", tr["preset"], "--seed", str(seed), "--out", str(run),
           "--checkpoint-every", str(tr["checkpoint_every"]), "--nproc", str(tr["nproc"]), "--device", device]
    if kind == "scratch-b":
        target_net(plan).save(run / "trial-base.json")
        cmd += ["--base", str(run / "trial-base.json")]
    for opt, key in (("--epochs", "epochs"), ("--cap", "cap"), ("--count", "count"), ("--train-subset", "train_subset")):
        if tr.get(key) is not None:
            cmd += [opt, str(tr[key])]
    data_dir = ctx.data_dir or plan.get("data_dir")
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    if not tr["download"]:
        cmd.append("--no-download")
    proc = run_as_group(cmd, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        why = lines[0][len("error:"):].strip() if lines else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"the {tr['nproc']}-process training of {run} failed: {clip(why, 300)}"
        # killed (a signal: the OOM killer, a lost peer's teardown), or a failure of the machine
        # that the child told in its error line: not the trial's fault, so it is retried
        if proc.returncode < 0 or proc.returncode >= 128 or any(k in why for k in MACHINE_SIGNS):
            raise EnvironmentFailure(msg)
        raise ArchsearchError(msg)
    return load_result(run / "result.json")


def gpu_group(device: str, n: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entries of the `n` GPUs from `cuda:K` on, counted among the GPUs
    this process sees (its own CUDA_VISIBLE_DEVICES, or all of them)."""
    k = int(device.split(":", 1)[1])
    seen = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    seen = seen or [str(i) for i in range(torch.cuda.device_count())]
    if k + n > len(seen):
        raise ArchsearchError(f"a {n}-process trial on {device} needs GPUs {k}..{k + n - 1}, and this worker sees "
                              f"{len(seen)}; give the workers devices {n} apart (--devices 0,{n},...)")
    return seen[k:k + n]


def run_as_group(cmd: list[str], grace: float = 30.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` (stderr captured) in its own process group. If this process is stopped meanwhile
    (Ctrl-C, SIGTERM), the whole group is stopped: SIGTERM, then SIGKILL after `grace` seconds,
    so that no training process it started (a rank) runs on holding its run folder."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        _, err = proc.communicate()
    except BaseException:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, None, err)


__all__ = ["train_processes", "gpu_group", "run_as_group", "MACHINE_SIGNS"]
