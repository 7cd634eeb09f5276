"""Re-test finished runs' final weights with and without test-time flip.

Written for the Table 4 reduced run (2026-12-04): under the `quick` preset its fine-tuning
arm had been tested without the mirror while the scratch arms had it (fixed since in
`train.make_schedule`). This measures what the mirror is worth for those nets.

    python benchmarks/retest_with_flip.py runs/table4-reduced/trials/row*-finetune-s* --data c10 \\
        --data-dir ../shared/data

Each DIR needs spec.json, model.pt (the final weights) and result.json. One JSON line per run
goes to stdout: the recorded final accuracy, and the final weights tested without and with the
flip (the first must equal the record for a run tested without it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from archsearch.data import load_dataset
from archsearch.spec import ArchSpec
from archsearch.train import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--data", default="c10")
    ap.add_argument("--data-dir")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ds = load_dataset(a.data, a.data_dir)
    for run in a.runs:
        spec = ArchSpec.load(run / "spec.json")
        state = torch.load(run / "model.pt", weights_only=True)
        rec = json.loads((run / "result.json").read_text())
        print(json.dumps({"run": str(run), "final_recorded": rec["final_acc"], "best_recorded": rec["best_acc"],
                          "final_no_flip": evaluate(spec, state, ds, "cpu"),
                          "final_flip": evaluate(spec, state, ds, "cpu", tta_flip=True)}), flush=True)


if __name__ == "__main__":
    main()
