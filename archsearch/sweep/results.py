"""A sweep's numbers: per-trial rows and per-(kind, generator, budget) means over seeds."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import optuna
from optuna.trial import TrialState

from ..compare import budget_tag
from ..generate import GENERATORS
from .storage import DUPLICATE_ATTR, WORKER_LOST


def trial_rows(study: optuna.Study) -> list[dict]:
    """One row per finished trial (COMPLETE, PRUNED or FAIL), first attempt first; not the
    markers of a point two workers asked for at once (no attempt: the other worker ran it)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) or DUPLICATE_ATTR in t.user_attrs:
            continue
        u = t.user_attrs
        rows.append({"trial": t.number, "state": t.state.name, "kind": u.get("kind", t.params.get("kind")),
                     "generator": u.get("generator", t.params.get("generator")),
                     "budget": u.get("budget", t.params.get("budget")), "seed": u.get("seed", t.params.get("seed")),
                     "params": u.get("params"), "macs": u.get("macs"), "best_acc": u.get("best_acc"),
                     "final_acc": u.get("final_acc"), "epochs": u.get("epochs"),
                     "train_seconds": u.get("train_seconds"), "stages": u.get("stages"), "widths": u.get("widths"),
                     "reference": u.get("reference", ""),
                     # a trial failed without a reason was failed by the heartbeat check: its worker was lost
                     "fail_reason": u.get("fail_reason") or (WORKER_LOST if t.state == TrialState.FAIL else ""),
                     "search_params": {k: round(v, 4) for k, v in t.params.items()} if t.params and
                     "stage0" in t.params else None})
    return rows


def summary_rows(study: optuna.Study) -> list[dict]:
    """Mean ± std over seeds of each (kind, generator, budget) — completed trials only,
    one per grid point (a point retried after a lost worker counts once)."""
    groups: dict = defaultdict(list)
    seen = set()
    for r in trial_rows(study):
        if r["state"] != "COMPLETE":
            continue
        key = (r["kind"], r["generator"], r["budget"], r["seed"])
        if r["generator"] == "search" or key not in seen:
            seen.add(key)
            groups[(r["kind"], r["generator"], r["budget"]) if r["generator"] != "search"
                   else (r["kind"], "search", r["trial"])].append(r)
    out = []
    for (kind, gen, b), rs in groups.items():
        a = np.asarray([r["best_acc"] for r in rs], dtype=float)
        f = np.asarray([r["final_acc"] for r in rs], dtype=float)
        first = rs[0]
        out.append({"kind": kind, "generator": gen if gen != "search" else (first["reference"] or "search").split(" ")[0],
                    "budget": budget_tag(float(first["budget"])), "budget_value": first["budget"],
                    "params": int(np.mean([r["params"] for r in rs])), "macs": int(np.mean([r["macs"] for r in rs])),
                    "epochs": first["epochs"], "seeds": len(rs),
                    "best_acc_mean": round(float(a.mean()), 2), "best_acc_std": round(float(a.std()), 2),
                    "final_acc_mean": round(float(f.mean()), 2), "final_acc_std": round(float(f.std()), 2),
                    "best_acc": f"{a.mean():.2f} ± {a.std():.2f}", "final_acc": f"{f.mean():.2f} ± {f.std():.2f}",
                    "stages": first["stages"], "trial": first["trial"],
                    "search_params": first["search_params"]})
    order = [*GENERATORS, "pattern", "search"]  # the registry's order, then search mode's points
    out.sort(key=lambda r: (r["kind"], order.index(r["generator"]) if r["generator"] in order else 99,
                            r["budget_value"], -r["best_acc_mean"]))
    return out


SUMMARY_COLS = ["kind", "generator", "budget", "params", "macs", "epochs", "seeds", "best_acc", "final_acc", "stages"]
NUMERIC_COLS = ["best_acc_mean", "best_acc_std", "final_acc_mean", "final_acc_std"]
