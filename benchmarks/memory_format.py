"""Memory format on CPU: training-step and evaluation images/s, contiguous (NCHW) against
channels_last (NHWC), side by side in one process, for each family at reduced widths.

Thin convs (the 4-16 channels of a ResNet at width 0.25) are overhead-bound on CPU, and
oneDNN's NHWC kernels handle them differently; this measures which format wins where.
Rounds alternate the two formats so that load changes hit both alike; the median is kept.

    python benchmarks/memory_format.py            # all nets, 2 threads
    python benchmarks/memory_format.py --quick    # 2 nets, 1 round

Appends one JSON line to benchmarks/results/memory_format.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__
from archsearch.archs import base_spec, build

NETS = [("vgg16", 0.25, 128), ("vgg16", 0.0625, 256), ("vgg19", 0.125, 128), ("resnet20", 0.25, 64),
        ("resnet56", 0.25, 64), ("resnet56", 1.0, 64), ("preresnet56", 0.25, 64), ("preresnet56", 1.0, 64),
        ("densenet40", 0.25, 64), ("densenet40", 1.0, 64)]


def rate(arch: str, width: float, batch: int, cl: bool, steps: int) -> tuple[float, float]:
    torch.manual_seed(0)
    m = build(base_spec(arch, 10, width=width))
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if cl:
        m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    for i in range(steps + 2):
        if i == 2:
            t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()
    train = batch * steps / (time.perf_counter() - t)
    m.eval()
    with torch.no_grad():
        m(x)
        t = time.perf_counter()
        for _ in range(steps):
            m(x)
    return train, batch * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    nets = NETS[:2] if a.quick else NETS
    rounds = 1 if a.quick else a.rounds
    rows = []
    for arch, width, batch in nets:
        r = {False: ([], []), True: ([], [])}
        for _ in range(rounds):
            for cl in (False, True):
                tr, ev = rate(arch, width, batch, cl, a.steps)
                r[cl][0].append(tr)
                r[cl][1].append(ev)
        med = {cl: (statistics.median(r[cl][0]), statistics.median(r[cl][1])) for cl in r}
        row = {"arch": arch, "width": width, "batch": batch,
               "train_contiguous": round(med[False][0], 1), "train_channels_last": round(med[True][0], 1),
               "train_ratio": round(med[True][0] / med[False][0], 3),
               "eval_contiguous": round(med[False][1], 1), "eval_channels_last": round(med[True][1], 1),
               "eval_ratio": round(med[True][1] / med[False][1], 3)}
        rows.append(row)
        print(f"{arch:>12} w{width:<6g} b{batch:<4} train {row['train_contiguous']:>7.1f} -> "
              f"{row['train_channels_last']:>7.1f} img/s (x{row['train_ratio']:.2f})   eval "
              f"{row['eval_contiguous']:>7.1f} -> {row['eval_channels_last']:>7.1f} (x{row['eval_ratio']:.2f})",
              flush=True)
    if not a.no_record:
        append_jsonl("memory_format", {
            "benchmark": "memory_format", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.machine(), "device": "cpu", "threads": a.threads, "torch": torch.__version__,
            "archsearch": __version__, "rounds": rounds, "steps": a.steps, "rows": rows})


if __name__ == "__main__":
    main()
