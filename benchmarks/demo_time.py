"""The README's first command, timed: `archsearch demo` from an empty work folder.

Each repeat runs `archsearch demo --workdir TMP` in a fresh temporary folder (the data cache
under $ARCHSEARCH_CACHE is kept, as on a user's second run; the venv and install are not
timed) and records the wall time of the whole command and the time the demo prints itself.
One JSON line per call (machine, torch, archsearch, date, every repeat, median) is appended
to benchmarks/results/demo_time.jsonl. Other jobs on the same cores slow it in proportion:
`--note` says what else ran.

    python benchmarks/demo_time.py --repeats 3 --note "quiet cores"
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__


def one_run() -> dict:
    work = Path(tempfile.mkdtemp(prefix="archsearch-demo-"))
    try:
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "archsearch", "demo", "--workdir", str(work / "runs")],
                           capture_output=True, text=True, cwd=work)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"demo failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
        said = re.search(r"demo done in (\d+)s", p.stdout)
        return {"wall_s": round(wall, 2), "demo_says_s": int(said.group(1)) if said else None}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = ap.parse_args()
    runs = []
    for i in range(args.repeats):
        runs.append(one_run())
        print(f"run {i + 1}/{args.repeats}: {runs[-1]['wall_s']:.1f} s", flush=True)
    walls = [r["wall_s"] for r in runs]
    append_jsonl("demo_time", {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
        "torch": torch.__version__, "archsearch": __version__, "python": platform.python_version(),
        "runs": runs, "median_wall_s": statistics.median(walls), "min_wall_s": min(walls), "max_wall_s": max(walls),
        "note": args.note,
    })


if __name__ == "__main__":
    main()
