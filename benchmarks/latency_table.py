"""How well the per-layer latency table predicts a net's latency, and how close `transfer
--by latency` lands (issue 30, item 1), on this machine under the default measure (CPU, torch
eager, eval, batch 1, 1 thread, median of 30 runs after 5 warm-up).

For each target: a fresh table (its own cache folder, so nothing measured before is reused),
filled by `archsearch profile`'s function, which measures the target and uniform nets at 1/2
and 1/4 of its widths end to end beside the table's estimate; then `transfer --by latency` at
three fractions of the target's latency (guided/transferred and uniform), each written net
measured end to end against its budget. The time each step took is recorded too (the table is
measured once per machine and measure; later solves read it).

Run it on a quiet machine (pause other jobs): timing noise on busy cores is of the order of the
errors measured. One JSON line per run goes to benchmarks/results/latency_table.jsonl.

    python benchmarks/latency_table.py --note "background jobs paused"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__

TARGETS = (("vgg19-c10", 0.25), ("vgg16-c10", 0.25), ("resnet56-c10", 1.0), ("densenet40-c10", 0.5))
PATTERN = "slimming-vgg16-c10"
FRACTIONS = "0.35,0.5,0.7"


def one_target(arch: str, width: float, cache: str) -> dict:
    from archsearch.latency import LatencyTable, profile
    from archsearch.measures import LatencyMeasure
    from archsearch.names import parse_target

    os.environ["ARCHSEARCH_LATENCY_CACHE"] = cache
    full = parse_target(arch).base_spec(width)
    t0 = time.perf_counter()
    p = profile(full, LatencyTable(LatencyMeasure()))
    table_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="archsearch-lat-") as out:
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "archsearch", "transfer", "--from", PATTERN, "--to", arch,
                            "--width", str(width), "--by", "latency", "--fractions", FRACTIONS, "--out", out],
                           capture_output=True, text=True, env={**os.environ, "ARCHSEARCH_LATENCY_CACHE": cache})
        transfer_s = time.perf_counter() - t0
        table = os.path.join(out, "table.json")  # written before a failed (generator, budget) ends it
        rows = json.load(open(table)) if os.path.exists(table) else []
    return {"target": arch, "width": width, "table_points": p.measured_now, "table_s": round(table_s, 2),
            "calibration": [round(v, 6) for v in p.calibration], "checks": p.checks,
            "transfer_exit": r.returncode, "transfer_error": r.stderr.strip().splitlines()[-1:] if r.returncode else [],
            "transfer_s": round(transfer_s, 2),
            "specs": [{k: row.get(k) for k in ("generator", "budget", "binding", "latency_ms", "latency_est_ms",
                                                "est_error_pct", "error_pct", "params", "macs", "failure")}
                      for row in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory(prefix="archsearch-latcache-") as cache:
        for arch, width in TARGETS:
            results.append(one_target(arch, width, os.path.join(cache, arch)))
            r = results[-1]
            print(f"{arch} w{width}: table {r['table_points']} points in {r['table_s']} s; checks "
                  + ", ".join(f"{c['widths']} {c['error_pct']:+.1f}%" for c in r["checks"])
                  + f"; transfer {r['transfer_s']} s: "
                  + ", ".join(f"{s['generator']} {s['budget']} {s['error_pct']:+.1f}% (table {s['est_error_pct']:+.1f}%)"
                              if s.get("latency_ms") else f"{s['generator']} {s['budget']} failed"
                              for s in r["specs"]), flush=True)
    append_jsonl("latency_table", {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
        "load_avg": os.getloadavg()[0], "torch": torch.__version__, "archsearch": __version__,
        "python": platform.python_version(), "measure": "CPU, torch eager, eval, batch 1, 1 thread, median of 30 "
        "after 5 warm-up", "pattern": PATTERN, "fractions": FRACTIONS, "results": results, "note": args.note,
    })


if __name__ == "__main__":
    main()
