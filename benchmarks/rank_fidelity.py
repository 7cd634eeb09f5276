"""Rank fidelity: does the `quick` recipe rank architectures as the slower `fast` recipe does?

Runs (or resumes) two sweeps of the same grid, the channel panel of the reduced Figure 3
(`sweeps/fig3-vgg16-c10.toml`, scales `rank-fast` and `rank-quick`: pruned vs uniform
VGG-16 width 0.25 at 5/10/20% of its parameters, 2 seeds, a 10,000-image CIFAR-10 subset),
then compares them:
- the ranking of the 6 arms (generator x budget, mean best accuracy over seeds) under each
  recipe, and Spearman's and Kendall's rank correlation between the two;
- the same over the 12 single trials;
- at each budget, whether both recipes agree on which generator wins (the paper's question).

    python benchmarks/rank_fidelity.py --data-dir ../shared/data

Appends one JSON line to benchmarks/results/rank_fidelity.jsonl. The sweeps live in their
usual work directories (runs/sweeps/fig3-vgg16-c10-rank-*), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from _results import append_jsonl  # benchmarks/_results.py
from archsearch import __version__

SPEC = "fig3-vgg16-c10"
SCALES = ("rank-fast", "rank-quick")


def trials(scale: str) -> dict[tuple[str, float, int], dict]:
    """(generator, budget, seed) -> best accuracy and training seconds, from the sweep's study."""
    from archsearch.sweep.cli import Sweep

    sw = Sweep(SPEC, None, None, scale)
    out = {}
    for t in sw.study.get_trials(deepcopy=False):
        if t.state.name != "COMPLETE":
            continue
        p = t.params
        out[(p["generator"], float(p["budget"]), int(p["seed"]))] = {
            "best_acc": float(t.value) / 100.0, "seconds": t.user_attrs.get("train_seconds")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--workers", default="auto")
    ap.add_argument("--no-run", action="store_true", help="only compare finished sweeps")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    if not a.no_run:
        for scale in SCALES:
            cmd = [sys.executable, "-m", "archsearch", "sweep", "run", SPEC, "--scale", scale,
                   "--data-dir", a.data_dir, "--workers", a.workers]
            print("$", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True)
    runs = {s: trials(s) for s in SCALES}
    keys = sorted(set(runs[SCALES[0]]) & set(runs[SCALES[1]]))
    if not keys:
        raise SystemExit("no trial finished under both recipes yet")
    arms = sorted({(g, b) for g, b, _ in keys})

    def arm_means(scale):
        return [float(np.mean([runs[scale][k]["best_acc"] for k in keys if k[:2] == arm])) for arm in arms]

    fast, quick = arm_means("rank-fast"), arm_means("rank-quick")
    t_fast = [runs["rank-fast"][k]["best_acc"] for k in keys]
    t_quick = [runs["rank-quick"][k]["best_acc"] for k in keys]
    budgets = sorted({b for _, b in arms})
    winners = []
    for b in budgets:
        w = {}
        for scale, means in (("fast", fast), ("quick", quick)):
            by_gen = {g: m for (g, bb), m in zip(arms, means) if bb == b}
            w[scale] = max(by_gen, key=by_gen.get)
            w[f"{scale}_margin"] = round(by_gen.get("pruned", 0) - by_gen.get("uniform", 0), 4)
        winners.append({"budget": b, **w, "agree": w["fast"] == w["quick"]})
    rec = {
        "benchmark": "rank_fidelity",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "archsearch": __version__, "spec": SPEC, "scales": list(SCALES), "trials_compared": len(keys),
        "arms": [{"generator": g, "budget": b, "fast": round(f, 4), "quick": round(q, 4)}
                 for (g, b), f, q in zip(arms, fast, quick)],
        "spearman_arms": round(float(spearmanr(fast, quick).statistic), 4),
        "kendall_arms": round(float(kendalltau(fast, quick).statistic), 4),
        "spearman_trials": round(float(spearmanr(t_fast, t_quick).statistic), 4),
        "kendall_trials": round(float(kendalltau(t_fast, t_quick).statistic), 4),
        "winner_per_budget": winners,
        "train_seconds": {s: round(sum(v["seconds"] or 0 for v in runs[s].values()), 1) for s in SCALES},
    }
    print(f"{len(arms)} arms, {len(keys)} trials under both recipes")
    for arm in rec["arms"]:
        print(f"  {arm['generator']:>8} {arm['budget']:>10,.0f}  fast {arm['fast']:.4f}  quick {arm['quick']:.4f}")
    print(f"Spearman (arms) {rec['spearman_arms']}, Kendall (arms) {rec['kendall_arms']}; "
          f"Spearman (trials) {rec['spearman_trials']}, Kendall (trials) {rec['kendall_trials']}")
    for w in winners:
        print(f"  budget {w['budget']:,.0f}: fast picks {w['fast']} ({w['fast_margin']:+.4f}), "
              f"quick picks {w['quick']} ({w['quick_margin']:+.4f})")
    if not a.no_record:
        append_jsonl("rank_fidelity", rec)


if __name__ == "__main__":
    main()
