"""Sweep throughput: how to fill a machine's cores with trials, measured side by side.

Runs the same sweep (default: the quickstart grid, 20 trials) several times, each in a
fresh work folder, with a different split of the cores: one worker with all threads, or
N workers with cores/N threads each. The sweep's own proposer runs once beforehand and
its proposals are copied into every work folder, so each timed run is the grid of trials
alone. Reports trials per hour and the ratio to the first configuration, and appends one
JSON line (machine, torch, date) to benchmarks/results/sweep_throughput.jsonl.

    python benchmarks/sweep_throughput.py                       # 1x2 against 2x1 on 2 cores, ~4 minutes
    python benchmarks/sweep_throughput.py --configs 1x4,2x2,4x1 --spec quickstart
    python benchmarks/sweep_throughput.py --gpu --configs 1x16,2x8,4x4   # N workers sharing GPU 0

With `--gpu`, every worker of a configuration trains on GPU 0 (`--devices 0,0,...`: several
small trainings sharing one GPU); the record names the GPU, and whether NVIDIA's
Multi-Process Service was running (`--mps-label`, as the caller knows it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__


def run(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "archsearch", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.exit(f"archsearch {' '.join(args)} exited {p.returncode}:\n" + "\n".join(p.stderr.splitlines()[-15:]))
    return time.perf_counter() - t0


def trials_done(workdir: Path) -> int:
    rows = json.loads((workdir / "trials.json").read_text())
    return sum(r["state"] == "COMPLETE" for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="quickstart")
    ap.add_argument("--configs", default=None, help="WORKERSxTHREADS,... (default: 1xC,2x(C/2) for C cores)")
    ap.add_argument("--scale", default=None, help="the spec's scale (default: its default scale)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--gpu", action="store_true", help="all workers on GPU 0 (--devices 0,0,...)")
    ap.add_argument("--mps-label", default=None, help="recorded as is: e.g. 'on' when MPS was running")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    extra = (["--scale", a.scale] if a.scale else []) + (["--data-dir", str(Path(a.data_dir).resolve())]
                                                         if a.data_dir else [])
    cores = os.cpu_count() or 1
    configs = [tuple(int(v) for v in c.split("x")) for c in (a.configs or f"1x{cores},2x{max(1, cores // 2)}").split(",")]
    root = Path(tempfile.mkdtemp(prefix="archsearch-sweep-throughput-"))
    try:
        warm = root / "warm"
        # the proposer and the data cache, once: a single-trial grid would not do, so the whole
        # sweep runs once; its proposals are what every timed run reuses
        run(["sweep", "run", a.spec, "--workdir", str(warm), *extra], root)
        out = []
        for workers, threads in configs:
            wd = root / f"w{workers}x{threads}"
            wd.mkdir()
            for sub in ("proposals", "patterns"):
                if (warm / sub).exists():
                    shutil.copytree(warm / sub, wd / sub)
            devices = ["--devices", ",".join(["0"] * workers)] if a.gpu else []
            secs = run(["sweep", "run", a.spec, "--workdir", str(wd), "--workers", str(workers), "--threads",
                        str(threads), *devices, *extra], root)
            n = trials_done(wd)
            out.append({"workers": workers, "threads": threads, "seconds": round(secs, 1), "trials": n,
                        "trials_per_hour": round(3600 * n / secs, 1)})
            print(f"{workers} worker(s) x {threads} thread(s): {n} trials in {secs:.1f}s = "
                  f"{out[-1]['trials_per_hour']:.0f} trials/hour")
        for o in out:
            o["ratio_to_first"] = round(o["trials_per_hour"] / out[0]["trials_per_hour"], 3)
        rec = {"benchmark": "sweep_throughput", "spec": a.spec, "scale": a.scale,
               "device": torch.cuda.get_device_name(0) if a.gpu else "cpu", "mps": a.mps_label,
               "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cores": cores,
               "torch": torch.__version__, "archsearch": __version__, "configs": out}
        print(json.dumps(rec))
        if not a.no_record:
            append_jsonl("sweep_throughput", rec)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
