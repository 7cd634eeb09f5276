"""Proposers at initialisation on the real CIFAR-10 (issue 31: "under a minute each on 2 cores").

Two measurements in one run:
- the whole command a user types, `archsearch extract --from M --data-dir DATA` (the paper
  preset's width 1, the default 3 seeds), for synflow-vgg16-c10, snip-resnet56-c10,
  grasp-vgg16-c10 and the channel version synflow_ch-vgg16-c10, each a fresh process in a
  fresh work folder (interpreter start, imports, the data set's load and every seed's scoring
  included), `--repeats` times, interleaved;
- SynFlow's per-round cut, side by side: the k-th smallest of VGG-16's 14.7M scores taken
  after 30 of 100 rounds at ratio 0.8 (most of them 0, the masked weights) by
  `torch.kthvalue` (what archsearch used, as the original does), `np.partition` and
  `np.sort` (`at_init.kth_smallest`, what it uses now), one thread, median of 5 each; the
  three agree on the value.
One JSON line is appended to benchmarks/results/init_speed.jsonl.

    python benchmarks/init_speed.py --data-dir ../shared/data --repeats 1 --note "quiet 2 cores"
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from _results import append_jsonl

COMMANDS = ["synflow-vgg16-c10", "snip-resnet56-c10", "grasp-vgg16-c10", "synflow_ch-vgg16-c10"]


def whole_commands(data_dir: str, repeats: int) -> dict:
    out: dict[str, list[float]] = {c: [] for c in COMMANDS}
    for _ in range(repeats):
        for name in COMMANDS:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "archsearch", "extract", "--from", name, "--data-dir", data_dir,
                                "--workdir", os.path.join(tmp, "w"), "--library", os.path.join(tmp, "lib")],
                               check=True, capture_output=True)
                out[name].append(round(time.perf_counter() - start, 2))
                print(name, out[name][-1], "s", flush=True)
    return out


def cut_speed() -> dict:
    from archsearch.archs import build, get_family
    from archsearch.propose import resolve_settings
    from archsearch.propose import synflow as S
    from archsearch.propose.at_init import kth_smallest

    torch.set_num_threads(1)
    base = resolve_settings("synflow-vgg16-c10")[-1]
    names = [c.name for c in get_family(base.family).convs(base)]
    torch.manual_seed(0)
    seen: dict = {}
    real = S.prune_at_or_below

    def keep(scores, n):
        seen.update(scores=[s.clone() for s in scores], n=n)
        return real(scores, n)

    S.prune_at_or_below = keep
    try:
        S.synflow_rounds(build(base), names, (3, 32, 32), 0.8, 30, torch.float32)
    finally:
        S.prune_at_or_below = real
    flat, k = torch.cat([s.flatten() for s in seen["scores"]]), seen["n"]
    ways = {"torch.kthvalue": lambda: float(torch.kthvalue(flat, k).values),
            "np.partition": lambda: float(np.partition(flat.numpy(), k - 1)[k - 1]),
            "np.sort (kth_smallest)": lambda: kth_smallest(flat, k)}
    rec = {"scores": flat.numel(), "k": k, "zeros": int((flat == 0).sum())}
    values = {}
    for name, f in ways.items():
        times = []
        for _ in range(5):
            start = time.perf_counter()
            values[name] = f()
            times.append(time.perf_counter() - start)
        rec[name] = round(statistics.median(times), 4)
    assert len(set(values.values())) == 1, values
    rec["kthvalue_over_sort"] = round(rec["torch.kthvalue"] / rec["np.sort (kth_smallest)"], 2)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    rec = {"machine": platform.node(), "cpus": os.cpu_count(), "torch": torch.__version__,
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "note": a.note,
           "cut": cut_speed(), "extract_s": whole_commands(a.data_dir, a.repeats)}
    rec["extract_median_s"] = {k: statistics.median(v) for k, v in rec["extract_s"].items()}
    append_jsonl("init_speed", rec)


if __name__ == "__main__":
    main()
