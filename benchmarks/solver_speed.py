"""The budget solver's speed (issue 30, item 5): a whole `archsearch transfer --budget 1M` onto
VGG-16, torchvision's MobileNetV2 and ResNet-50, before and after counts stopped building modules.

- after: the command as it is: a `tv.*` family counts from its per-layer table, traced once
  per process with its channel groups (archsearch/archs/tv_table.py);
- before: the same command with every `tv.*` count taken on the built, narrowed module, as
  archsearch counted until the table (`tv.traced_layers` in place of the table's layers); a
  native family (VGG) counts from its spec either way, and imports no torchvision;
- before and after run with `--no-latency` (the solver and the command around it, as before
  transfer measured latency); after+latency is the command as a user types it today, which
  also measures every written net's latency end to end (median of 30 runs at batch 1, one
  thread: the net's own speed, not the solver's).
Each run is a fresh process that runs the command (`archsearch transfer ...` through its click
entry point; interpreter start, imports and the first trace included: what a user waits for,
`whole_s`, from the launch to the command's return); then, in the same process, the solve
alone again after the first trace (the layers' per-widths cache cleared: `warm_solve_s`).
Every target's median over the repeats is divided by VGG-16's median in the same mode: the
issue asks that a transfer onto a torchvision model take at most 2.5x one onto VGG-16. Runs
interleave the targets and modes, so that a load on the machine falls on all of them alike.
One JSON line (machine, torch and torchvision versions, date, every run, medians, ratios) is
appended to benchmarks/results/solver_speed.jsonl.

    python benchmarks/solver_speed.py --repeats 3 --note "2 shared cores, a training run beside"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__

TARGETS = ("vgg16-c10", "tv.mobilenet_v2-c10", "tv.resnet50-c10")
PATTERN, BUDGET = "slimming-vgg16-c10", "1M"
MODES = ("before", "after", "after+latency")

# run in a fresh interpreter: the command, then the solve again (first trace already made)
DRIVER = """
import functools, json, sys, time
mode, target, out = sys.argv[1:4]
extra = [] if mode == "after+latency" else ["--no-latency"]
if mode == "before" and target.startswith("tv."):
    import archsearch.archs.tv as tv
    tv._layers = functools.lru_cache(maxsize=256)(tv.traced_layers)  # counts on the built module, as before
from archsearch.cli import cli
try:
    cli.main(["transfer", "--from", "{pattern}", "--to", target, "--budget", "{budget}", "--out", out, *extra],
             standalone_mode=False)
except SystemExit as e:
    if e.code:
        raise
print("DONE " + json.dumps({{"at": time.time()}}), flush=True)  # the command's end, on the wall clock
from archsearch.config import DEFAULT_PRESET, resolve
from archsearch.workflows.transfer import generate_specs, plan
if target.startswith("tv."):
    import archsearch.archs.tv as tv
    tv._layers.cache_clear()  # the per-widths cache: a solve that met these widths before would not count
t = plan(target, "{pattern}", resolve(DEFAULT_PRESET), budgets="{budget}", out_dir=out)
t0 = time.perf_counter()
generate_specs(t)
print("SOLVE " + json.dumps({{"warm_solve_s": time.perf_counter() - t0}}))
""".format(pattern=PATTERN, budget=BUDGET)


def one_run(mode: str, target: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="archsearch-solver-") as work:
        t0 = time.time()  # the wall clock: the driver reports when the command ended on the same clock
        p = subprocess.run([sys.executable, "-c", DRIVER, mode, target, os.path.join(work, "out")],
                           capture_output=True, text=True, cwd=work)
    if p.returncode != 0:
        sys.exit(f"{mode} transfer onto {target} failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    wall = json.loads(p.stdout.rsplit("DONE ", 1)[1].splitlines()[0])["at"] - t0
    solve = json.loads(p.stdout.rsplit("SOLVE ", 1)[1])
    return {"mode": mode, "target": target, "whole_s": round(wall, 3), "warm_solve_s": round(solve["warm_solve_s"], 4)}


def summarise(runs: list[dict], modes: list[str]) -> dict:
    """Per mode and target: median whole-command and warm-solve seconds, and the whole
    command's ratio to VGG-16's in the same mode."""
    out = {}
    for mode in modes:
        med = {t: statistics.median(r["whole_s"] for r in runs if r["mode"] == mode and r["target"] == t)
               for t in TARGETS}
        solve = {t: statistics.median(r["warm_solve_s"] for r in runs if r["mode"] == mode and r["target"] == t)
                 for t in TARGETS}
        out[mode] = {t: {"whole_s": round(med[t], 2), "ratio_to_vgg16": round(med[t] / med[TARGETS[0]], 2),
                         "warm_solve_s": round(solve[t], 3)} for t in TARGETS}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    args = ap.parse_args()
    modes = [m for m in MODES if m in args.modes.split(",")]
    runs = []
    for i in range(args.repeats):
        for mode in modes:
            for target in TARGETS:
                runs.append(one_run(mode, target))
                r = runs[-1]
                print(f"{i + 1}/{args.repeats} {mode:6} {target:20} whole {r['whole_s']:6.2f} s, "
                      f"solve after the first trace {r['warm_solve_s']:.3f} s", flush=True)
    summary = summarise(runs, modes)
    for mode in modes:
        print(mode + ": " + ", ".join(f"{t} {v['whole_s']:.2f} s ({v['ratio_to_vgg16']:.2f}x)"
                                      for t, v in summary[mode].items()))
    import torchvision  # for the record only: the runs themselves import it where they need it

    append_jsonl("solver_speed", {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
        "load_avg": os.getloadavg()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
        "archsearch": __version__, "python": platform.python_version(),
        "command": f"archsearch transfer --from {PATTERN} --to TARGET --budget {BUDGET} (--no-latency but in "
                   "after+latency)",
        "runs": runs, "summary": summary, "note": args.note,
    })


if __name__ == "__main__":
    main()
