"""Every trained net of a sweep, timed again in one quiet process: the latency beside each
trial's params and MACs, for studies made before trials recorded a latency, and for a figure
whose latencies should all come from one machine state (issue 30, items 3 and 6).

A sweep's workers time their own net after training (the trial's `latency`), while other
workers may be training on the other cores. This script reads the study from its journal,
rebuilds each completed trial's net from its recorded widths on the plan's target (a sparse
net runs at its dense net's speed on these back ends, so its widths say all), and times every
distinct net `--rounds` times, interleaved so that a change in the machine's state falls on all
of them alike; a net's latency is the median of its rounds, each the default measure (median of
30 runs after 5 warm-up, batch 1, one thread, torch eager on the CPU). Pause other jobs first.

    python benchmarks/study_latency.py benchmarks/results/fig5-vgg19-c10-full/optuna-journal.log \\
        --out benchmarks/results/fig5-vgg19-c10-full/latency.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics

import torch

from archsearch import __version__
from archsearch._io import write_json
from archsearch.latency import machine, measure_spec
from archsearch.measures import LatencyMeasure
from archsearch.sweep.plan import load_study
from archsearch.sweep.points import target_net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("journal", help="the study's optuna-journal.log")
    ap.add_argument("--study", help="its name (default: the journal's one study)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = ap.parse_args()
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(args.journal))
    name = args.study or optuna.get_all_study_names(storage)[0]
    study, plan = load_study(args.journal, name)
    full = target_net(plan)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and "widths" in t.user_attrs]
    nets = {tuple(t.user_attrs["widths"]) for t in trials}
    measure = LatencyMeasure()
    times: dict[tuple, list[float]] = {w: [] for w in nets}
    for r in range(args.rounds):
        for w in sorted(nets):
            times[w].append(measure_spec(full.replace(widths=list(w), masks=None), measure))
        print(f"round {r + 1}/{args.rounds}: {len(nets)} nets timed", flush=True)
    rows = [{"trial": t.number, "kind": t.user_attrs.get("kind"), "generator": t.user_attrs.get("generator"),
             "budget": t.user_attrs.get("budget"), "seed": t.user_attrs.get("seed"),
             "params": t.user_attrs.get("params"), "macs": t.user_attrs.get("macs"),
             "latency_ms": round(1e3 * statistics.median(times[tuple(t.user_attrs["widths"])]), 4),
             "rounds_ms": [round(1e3 * v, 4) for v in times[tuple(t.user_attrs["widths"])]],
             "final_acc": t.user_attrs.get("final_acc")} for t in trials]
    write_json(args.out, {
        "study": name, "journal": os.path.relpath(args.journal, os.path.dirname(os.path.abspath(args.out))),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
        "platform": platform.platform(), "archsearch": __version__, "torch": torch.__version__,
        "measure": measure.to_dict(), "rounds": args.rounds, "load_avg": os.getloadavg()[0], "note": args.note,
        "trials": rows})
    print(f"wrote {args.out}: {len(rows)} trials, {len(nets)} distinct nets")


if __name__ == "__main__":
    main()
