"""Variants of the `quick` recipe on a CIFAR-10 subset: which lever adds accuracy at 8 epochs?

Each variant is `quick` with one or two knobs changed (`archsearch.config.TrainConfig` fields),
trained on the same spec, subset and seed; the best test accuracy is recorded. A screen for
issue 10's bar (fast's 20-epoch accuracy in 40% of its time): a lever that wins here is
then measured on the full set with `benchmarks/time_to_accuracy.py`.

    python benchmarks/recipe_variants.py --data-dir ../shared/data            # all variants
    python benchmarks/recipe_variants.py --data-dir ../shared/data quick ls02

Appends one JSON line per variant to benchmarks/results/recipe_variants.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import platform
import time

import torch

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__
from archsearch import train as T
from archsearch.archs import base_spec
from archsearch.data import load_dataset, subset_train

VARIANTS = {
    "quick": {},
    "t2": {"translate": 2},                           # airbench's 2-pixel translation
    "ls02": {"label_smoothing": 0.2},                 # airbench's label smoothing
    "wd1e4_lr04": {"weight_decay": 2.5e-4, "lr": 0.4},
    "b512_lr04": {"batch_size": 512, "lr": 0.4},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--subset", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = subset_train(load_dataset("c10", a.data_dir), a.subset)
    spec = base_spec("vgg16", 10, width=0.25)
    for name in a.variants:
        T.PRESETS["variant"] = dataclasses.replace(T.PRESETS["quick"], name="variant", **VARIANTS[name])
        sched = T.make_schedule("variant", epochs=a.epochs)
        t = time.time()
        r = T.train(spec, data, sched, seed=0, out_dir=None)
        rec = {"benchmark": "recipe_variants", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": platform.machine(), "threads": a.threads, "torch": torch.__version__,
               "archsearch": __version__, "arch": "vgg16", "width": 0.25, "data": data.describe(), "seed": 0,
               "variant": name, "changes": VARIANTS[name], "epochs": a.epochs, "best_acc": round(r.best_acc, 4),
               "final_acc": round(r.final_acc, 4), "wall_seconds": round(time.time() - t, 1)}
        print(name, rec["best_acc"], rec["final_acc"], rec["wall_seconds"], flush=True)
        append_jsonl("recipe_variants", rec)


if __name__ == "__main__":
    main()
