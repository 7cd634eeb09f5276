"""Several small trainings sharing one GPU, against one at a time: measured side by side.

A sweep with `--workers 4 --devices 0,0,0,0` runs four trainings at once on one GPU. This
measures what that buys on real data, without the sweep around it: the same N trainings
(`archsearch train`, separate processes, seeds 1..N) run one after the other, then all at once,
on GPU 0, and each way's wall time gives trainings per hour and the ratio. Each training's
process start and data loading are in both times; a sweep worker pays them once for all its
trials, so the ratio overstates a sweep's gain (`sweep_throughput.py --gpu` measures that). Whether NVIDIA's Multi-Process Service runs is up to
the caller (`nvidia-cuda-mps-control -d`); pass `--mps-label on` to record it.

    python benchmarks/gpu_sharing.py --data-dir DIR                      # VGG-16 w0.25, quick, 4 epochs, N=4
    python benchmarks/gpu_sharing.py --data-dir DIR --mps-label on

Appends one JSON line (machine, GPU, torch, date) to benchmarks/results/gpu_sharing.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__


def command(a, out: Path, seed: int, epochs: int) -> list[str]:
    return [sys.executable, "-m", "archsearch", "train", f"{a.arch}-{a.data}", "--width", str(a.width),
            "--preset", a.preset, "--epochs", str(epochs), "--seed", str(seed), "--device", "cuda:0",
            "--out", str(out), *(["--data-dir", a.data_dir] if a.data_dir else [])]


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(f"a training exited {p.returncode}:\n" + "\n".join(err.splitlines()[-10:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="vgg16")
    ap.add_argument("--data", default="c10")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--n", type=int, default=4, help="trainings (and processes at once)")
    ap.add_argument("--mps-label", default=None)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("error: this benchmark needs a CUDA GPU")
    root = Path(tempfile.mkdtemp(prefix="archsearch-gpu-sharing-"))
    # the data's array cache and CUDA's first start, outside the timings
    wait_all([start(command(a, root / "warm", 0, 1))])
    seeds = range(1, a.n + 1)
    out = {}
    t0 = time.perf_counter()
    for i in seeds:
        wait_all([start(command(a, root / f"seq-{i}", i, a.epochs))])
    out["sequential"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    wait_all([start(command(a, root / f"par-{i}", i, a.epochs)) for i in seeds])
    out["concurrent"] = time.perf_counter() - t0
    acc = {k: [round(json.loads((root / f"{k}-{i}" / "result.json").read_text())["best_acc"], 4)
               for i in seeds] for k in ("seq", "par")}
    rec = {"benchmark": "gpu_sharing", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "device": torch.cuda.get_device_name(0), "mps": a.mps_label, "torch": torch.__version__,
           "archsearch": __version__, "arch": a.arch, "width": a.width, "data": a.data, "preset": a.preset,
           "epochs": a.epochs, "n": a.n,
           "seconds": {k: round(v, 1) for k, v in out.items()},
           "trainings_per_hour": {k: round(3600 * a.n / v, 1) for k, v in out.items()},
           "ratio_concurrent_to_sequential": round(out["sequential"] / out["concurrent"], 3),
           "best_acc": {"sequential": acc["seq"], "concurrent": acc["par"]}}
    print(f"{a.n} x {a.arch} w{a.width:g} {a.preset} {a.epochs} ep on {rec['device']} (MPS: {a.mps_label}): "
          f"one at a time {out['sequential']:.1f}s, all at once {out['concurrent']:.1f}s = "
          f"{rec['ratio_concurrent_to_sequential']:.2f}x the trainings per hour")
    print(json.dumps(rec))
    if not a.no_record:
        append_jsonl("gpu_sharing", rec)


if __name__ == "__main__":
    main()
