"""Time to accuracy: two training recipes on the same network, data, device and cores.

The reference is the `fast` preset (the paper's optimiser and step schedule, 20 epochs,
batch 128); the candidate is `quick` (airbench's levers: one-cycle lr per step, Nesterov,
label smoothing, batch 256, test-time flip; see `archsearch.config.PRESETS`). Both train
the same spec from the same seed, one after the other in this process, and every epoch's
test accuracy and wall time (training + evaluation) is recorded.

The target accuracy is the reference's best test accuracy (the paper reports the best
epoch); the result is the candidate's wall time to first reach it, as a fraction of the
reference's whole run (issue 10's bar: at most 0.40).

    python benchmarks/time_to_accuracy.py --data-dir ../shared/data            # VGG-16 w0.25, CIFAR-10
    python benchmarks/time_to_accuracy.py --data digits --arch vgg11 --quick    # a minute, a smoke test

Appends one JSON line (machine, torch version, date, settings, both curves) to
benchmarks/results/time_to_accuracy.jsonl and prints a summary. Runs live in resumable
folders under --workdir, so an interrupted benchmark goes on where it stopped (the
recorded times are the runs' own training time, not the wall clock of the resume).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
from pathlib import Path

import torch

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__
from archsearch.archs import base_spec
from archsearch.data import load_dataset, subset_train
from archsearch.progress import EpochProgress
from archsearch.train import device_name, make_schedule, resolve_device, train


def curve(result) -> list[dict]:
    """Per epoch: test accuracy and the cumulative seconds (training + evaluation) so far."""
    out, t = [], 0.0
    for h in result.history:
        t += h["seconds"]
        out.append({"epoch": h["epoch"], "test_acc": round(h["test_acc"], 4), "seconds": round(t, 1)})
    return out


def time_to(points: list[dict], target: float) -> float | None:
    return next((p["seconds"] for p in points if p["test_acc"] >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="vgg16")
    ap.add_argument("--data", default="c10")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--reference", default="fast")
    ap.add_argument("--candidate", default="quick")
    ap.add_argument("--reference-epochs", type=int, default=None, help="default: the preset's")
    ap.add_argument("--candidate-epochs", type=int, default=None, help="default: the preset's")
    ap.add_argument("--train-subset", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workdir", default="runs/benchmarks/time_to_accuracy")
    ap.add_argument("--quick", action="store_true", help="smoke test: 2+2 epochs on a 512-image subset")
    ap.add_argument("--no-record", action="store_true", help="do not append to benchmarks/results")
    a = ap.parse_args()
    if a.quick:
        a.reference_epochs, a.candidate_epochs, a.train_subset = 2, 2, a.train_subset or 512
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    data = subset_train(load_dataset(a.data, a.data_dir), a.train_subset)
    spec = base_spec(a.arch, data.num_classes, width=a.width)
    print(f"{a.arch} width {a.width:g} on {data.describe()} | {device_name(dev)}, torch {torch.__version__}")
    runs = {}
    for role, preset, epochs in (("reference", a.reference, a.reference_epochs),
                                 ("candidate", a.candidate, a.candidate_epochs)):
        sched = make_schedule(preset, epochs=epochs)
        sub = f"-sub{a.train_subset}" if a.train_subset else ""
        out = Path(a.workdir) / f"{a.arch}-w{a.width:g}-{a.data}-{preset}-e{sched.epochs}-s{a.seed}{sub}"
        r = train(spec, data, sched, seed=a.seed, device=str(dev), out_dir=out, checkpoint_every=1,
                  progress=EpochProgress(f"{role} {preset}"))
        runs[role] = {"preset": preset, "schedule": sched.to_dict(), "best_acc": r.best_acc, "final_acc": r.final_acc,
                      "train_seconds": round(r.train_seconds, 1), "curve": curve(r)}
    ref, cand = runs["reference"], runs["candidate"]
    target = ref["best_acc"]
    t_ref = time_to(ref["curve"], target)
    t_cand = time_to(cand["curve"], target)
    ratio = None if t_cand is None else round(t_cand / ref["train_seconds"], 3)
    rec = {"benchmark": "time_to_accuracy", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "device": device_name(dev),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "archsearch": __version__,
           "arch": a.arch, "width": a.width, "data": data.describe(), "seed": a.seed,
           "target_acc": round(target, 4), "reference_seconds_to_target": t_ref,
           "candidate_seconds_to_target": t_cand, "ratio_candidate_to_reference_run": ratio, **runs}
    print(f"\ntarget = {a.reference}'s best test accuracy {100 * target:.2f}% (reached at {t_ref:.0f}s of its "
          f"{ref['train_seconds']:.0f}s run)")
    print(f"{a.candidate}: best {100 * cand['best_acc']:.2f}%, final {100 * cand['final_acc']:.2f}% in "
          f"{cand['train_seconds']:.0f}s; " + (f"reached the target at {t_cand:.0f}s = {ratio:.2f} x the reference's run"
                                              if t_cand is not None else "did not reach the target"))
    if not a.no_record:
        append_jsonl("time_to_accuracy", rec)


if __name__ == "__main__":
    main()
