"""A table sweep's numbers and report (`mode = "table"`, `table.py` runs it): per row and arm the
accuracy over seeds, the comparisons of the scratch arms with fine-tuning, the provenance,
report.* and table.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from ..compare import markdown_table, write_tables
from ..experiment import Spread
from ..plot import render_png, table_figure, write_html
from ..redact import redact
from .table import ARMS, point


# -- the report -----------------------------------------------------------------------------------
def _points(study: optuna.Study) -> dict[str, FrozenTrial]:
    """The completed trial of each point (the first, if a duplicate also completed)."""
    out: dict[str, FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        out.setdefault(t.user_attrs.get("point"), t)
    return out


def completed(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def summary_markdown(study: optuna.Study, plan: dict) -> str:
    """The summary as the Markdown table `sweep run` and `report` print."""
    return markdown_table(summary(study, plan), ["row", "pruned_params"] + plan["arms"])


def summary(study: optuna.Study, plan: dict) -> list[dict]:
    """One row per table row: per arm the best-epoch accuracy, mean ± std over seeds, its
    seeds and epochs; the pruned net's parameters and MACs; the paper's numbers where cited."""
    done = _points(study)
    out = []
    for i, r in enumerate(plan["rows"]):
        row: dict[str, Any] = {"row": r["label"], "method": r["method"], "network": r["arch"], "data": r["data"],
                               "ratio": r["settings"].get("ratio", r["settings"].get("variant", "")),
                               "width": r["settings"].get("width", 1.0),
                               "paper_source": r.get("paper_source") or ""}
        for arm in plan["arms"]:
            ts = [done[p] for p in (point(i, arm, s) for s in range(plan["spec"]["seeds"])) if p in done]
            acc = Spread.of([t.user_attrs["best_acc"] for t in ts])  # the reports' one convention
            row.update(acc.cells(arm) if acc else {f"{arm}_mean": None, f"{arm}_std": None})
            row[arm] = acc.text() if acc else ""
            row[f"{arm}_seeds"] = len(ts)
            row[f"{arm}_epochs"] = sorted({int(t.user_attrs["epochs"]) for t in ts}) if ts else []
            if ARMS[arm].is_proposal and ts:
                row["params"] = int(np.mean([t.user_attrs["params"] for t in ts]))
                row["pruned_params"] = int(np.mean([t.user_attrs["pruned_params"] for t in ts]))
                row["pruned_macs"] = int(np.mean([t.user_attrs["pruned_macs"] for t in ts]))
            paper = (r.get("paper") or {}).get(arm)
            row[f"paper_{arm}"] = paper if paper is not None else ""
        out.append(row)
    return out


def verdicts(rows: list[dict], plan: dict) -> list[str]:
    """Per row: does training from scratch match the fine-tuned net (the paper's claim)? A
    scratch arm "matches" when its mean is at least the fine-tuned mean minus the larger std."""
    lines = []
    for r in rows:
        if r.get("finetune_mean") is None:
            continue
        ft, sd = r["finetune_mean"], r["finetune_std"] or 0.0
        parts = []
        for arm in ("scratch-e", "scratch-b"):
            if r.get(f"{arm}_mean") is None:
                continue
            tol = max(sd, r[f"{arm}_std"] or 0.0)
            d = r[f"{arm}_mean"] - ft
            word = "beats" if d > tol else ("matches" if d >= -tol else "falls short of")
            parts.append(f"{arm} {word} fine-tuning ({d:+.2f} points; the larger std is {tol:.2f})")
        if parts:
            few = min(r.get(f"{a}_seeds", 0) for a in ("finetune", "scratch-e", "scratch-b") if f"{a}_seeds" in r)
            lines.append(f"{r['row']}: " + "; ".join(parts)
                         + (" — one seed: no spread to judge by" if few < 2 else ""))
    return lines


def provenance(study: optuna.Study, plan: dict) -> str:
    s, tr = plan["spec"], plan["spec"]["train"]
    widths = sorted({float(r["settings"].get("width", 1.0)) for r in plan["rows"]})
    width = (f"width {widths[0]:g}" if len(widths) == 1
             else "width per row (" + ", ".join(f"{w:g}" for w in widths) + "; the width column)")
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    devices = sorted({str(t.user_attrs.get("device", "?")) for t in done})
    torch_v = sorted({str(t.user_attrs.get("torch_version", "?")) for t in done})
    return (f"study {study.study_name}" + (f" (scale {s['scale']})" if s.get("scale") else "")
            + f"; preset {tr['preset']}, {width}"
            + (f", {tr['epochs']} epochs" if tr.get("epochs") else "")
            + (f", train subset {tr['train_subset']}" if tr.get("train_subset") else "")
            + f"; seeds 0..{s['seeds'] - 1}; {', '.join(devices) or '-'}, torch {', '.join(torch_v) or '-'}; "
            f"archsearch {plan['archsearch_version']}, {plan['created'][:10]}"
            + (f"; command: {redact(plan['command'])}" if plan.get("command") else ""))


def write_outputs(study: optuna.Study, plan: dict, st, out_dir: Path, png: bool = False) -> tuple[Path, Path]:
    """report.md/.csv/.json in the paper's layout and table.html (+ .png): bars per arm with
    error bars, one group per row. `st`: the study's `runner.status` (its trials line and failures)."""
    rows = summary(study, plan)
    s = plan["spec"]
    prov = provenance(study, plan)
    arms = plan["arms"]
    lines = verdicts(rows, plan)
    header = (f"# {s.get('title') or s['name']}\n\n{prov}\n\n"
              + f"- trials: {st.line()}\n"
              + "".join(f"- failed trial #{n}: {why}\n" for n, why in st.failures)
              + "\nTest accuracy (%) at the best epoch, mean ± std over seeds. Arms: "
              + "; ".join(f"**{a}**: {ARMS[a].about}" for a in arms)
              + ". `*_epochs`: the epochs each arm trained. `paper_*`: the paper's number where a source"
              " was opened (paper_source); empty otherwise, and left out of this file when no row cites"
              " one. report.csv and report.json also hold each arm's mean, std and seed count as numbers.\n"
              + ("\nScratch against fine-tuned:\n\n" + "".join(f"- {v}\n" for v in lines) if lines else ""))
    cols = (["row", "network", "data", "ratio", "width", "params", "pruned_params"] + arms
            + [f"{a}_epochs" for a in arms] + [f"paper_{a}" for a in arms] + ["paper_source"])
    numeric = [f"{a}_{k}" for a in arms for k in ("mean", "std", "seeds")]
    # report.md: the readable columns (the paper's only where some row cites it); .csv/.json: all
    cited = any(r["paper_source"] for r in rows)
    md_cols = [c for c in cols if cited or not c.startswith("paper_")]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tables(rows, cols + numeric, out_dir / "report", header, md_cols=md_cols)
    html = out_dir / "table.html"
    colours = {a: ARMS[a].color for a in arms}
    write_html(table_figure(rows, arms, colours=colours, title=s.get("title") or s["name"], caption=prov), html)
    if png:
        render_png(html, html.with_suffix(".png"))
    return out_dir / "report.md", html


__all__ = ["summary", "summary_markdown", "verdicts", "provenance", "write_outputs", "completed"]
