"""Several small trainings in one process, against one training per process: measured side by side.

Issue 10 asks whether, on small nets, a sweep would gain from training several networks in
one process (threads sharing one interpreter and one copy of the data) over the sweep's
default of one single-thread worker process per core. This trains the same set of small
networks three ways, one after the other in one run:

- `processes`: P worker processes of 1 thread each, one training at a time per process (what
  `sweep run --workers auto` does on a P-core CPU);
- `threads`: one process, P Python threads, each training its own network, torch ops on the
  calling thread (`torch.set_num_threads(1)`; the ops release the GIL, the Python between
  them does not);
- `sequential`: one process, one training at a time with P torch threads (`--workers 1`).

The networks are the quickstart's kind of trials: VGG-11 at width 0.25 on scikit-learn's
digits, uniform and random pruning at 5% and 20% of its parameters, 2 seeds each (8
trainings), `tiny` preset, 6 epochs. Reports trainings per hour and the ratio to
`processes`, and appends one JSON line (machine, torch, date) to
benchmarks/results/trainings_per_process.jsonl. The seeds of trainings that run in threads
share torch's global generator, so only the times (not the accuracies) mean anything there.

    python benchmarks/trainings_per_process.py             # about 3 minutes on 2 quiet cores
    python benchmarks/trainings_per_process.py --epochs 2 --no-record   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor

import torch

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__

GENERATORS, FRACTIONS, SEEDS = ("uniform", "random"), (0.05, 0.2), (0, 1)


def jobs(epochs: int) -> list[dict]:
    return [{"generator": g, "fraction": f, "seed": s, "epochs": epochs}
            for g in GENERATORS for f in FRACTIONS for s in SEEDS]


def _train(job: dict) -> float:
    """One training; returns its best test accuracy."""
    from archsearch.counting import count
    from archsearch.data import load_dataset
    from archsearch.generate import generate
    from archsearch.names import parse_target
    from archsearch.train import make_schedule, train

    base = parse_target("vgg11-digits").base_spec(0.25)
    spec = generate(job["generator"], base, job["fraction"] * count(base).params, by="params",
                    seed=job["seed"]).spec
    res = train(spec, load_dataset("digits"), make_schedule("tiny", epochs=job["epochs"]), seed=job["seed"],
                device="cpu")
    return res.best_acc


def _one_thread_worker() -> None:
    torch.set_num_threads(1)


def timed(mode: str, todo: list[dict], parallel: int) -> float:
    """Seconds to train `todo`. The worker processes are started and warmed (imports, data)
    before the clock starts: a sweep pays that once, not per training."""
    if mode == "processes":
        ctx = mp.get_context("spawn")  # a fresh interpreter per worker, as `sweep run` starts them
        with ctx.Pool(parallel, initializer=_one_thread_worker) as pool:
            pool.map(_train, [{**todo[0], "epochs": 1}] * parallel, chunksize=1)
            t0 = time.perf_counter()
            pool.map(_train, todo, chunksize=1)
            return time.perf_counter() - t0
    t0 = time.perf_counter()
    if mode == "threads":
        torch.set_num_threads(1)
        with ThreadPoolExecutor(parallel) as ex:
            list(ex.map(_train, todo))
    else:
        torch.set_num_threads(parallel)
        for j in todo:
            _train(j)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--parallel", type=int, default=os.cpu_count() or 1, help="workers / threads (default: cores)")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    todo = jobs(a.epochs)
    _train({**todo[0], "epochs": 1})  # warm the data cache and the imports once, untimed
    out = []
    for mode in ("processes", "threads", "sequential"):
        secs = timed(mode, todo, a.parallel)
        out.append({"mode": mode, "parallel": a.parallel, "seconds": round(secs, 1), "trainings": len(todo),
                    "trainings_per_hour": round(3600 * len(todo) / secs, 1)})
        print(f"{mode}: {len(todo)} trainings in {secs:.1f}s = {out[-1]['trainings_per_hour']:.0f}/hour", flush=True)
    for o in out:
        o["ratio_to_processes"] = round(o["trainings_per_hour"] / out[0]["trainings_per_hour"], 3)
    rec = {"benchmark": "trainings_per_process", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cores": os.cpu_count(),
           "torch": torch.__version__, "archsearch": __version__, "epochs": a.epochs,
           "nets": "vgg11-digits w0.25, uniform/random at 5% and 20% params, seeds 0-1, tiny preset", "modes": out}
    print(json.dumps(rec))
    if not a.no_record:
        append_jsonl("trainings_per_process", rec)


if __name__ == "__main__":
    main()
