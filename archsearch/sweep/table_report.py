"""A table sweep's numbers and report (`mode = "table"`, `table.py` runs it): per row and arm the
final-epoch accuracy over seeds (`stats.Spread`; the best epoch beside it), the scratch arms'
paired comparisons with fine-tuning (`stats.paired`), the provenance, report.* and table.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from ..compare import markdown_table, write_tables
from ..counting import count, original_params
from ..plot import render_png, table_figure, write_html
from ..redact import redact
from ..spec import ArchSpec
from ..stats import STD_NOTE, Spread, final_acc, over_seeds, paired
from .table import ARMS, SAME_AS, point


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


# an arm that is another's run when it trains for the same epochs: same net, seed and recipe
TWIN_OF = {a.name: a.same_as for a in ARMS.values() if a.same_as}  # the registry's (`Arm.same_as`)
REFERENCE = "finetune"  # what the scratch arms are compared with (the paper's claim)
COMPARED = ("scratch-e", "scratch-b")


def _arm_trials(done: dict[str, FrozenTrial], plan: dict, i: int, arm: str) -> dict[int, FrozenTrial]:
    """Seed -> the completed trial of one (row, arm)."""
    return {s: done[p] for s in range(plan["spec"]["seeds"]) if (p := point(i, arm, s)) in done}


def _same_runs(arm: str, trials: dict[str, dict[int, FrozenTrial]]) -> dict[int, str]:
    """Seed -> the arm whose run this arm's trial of that seed is: as the trial records it
    (`SAME_AS`: it did not train), or as the records show it (its epochs equal its twin's for
    the same seed, so it repeated that run: a study made before trials recorded `SAME_AS`)."""
    twin = trials.get(TWIN_OF.get(arm, ""), {})
    out = {}
    for s, t in trials[arm].items():
        if t.user_attrs.get(SAME_AS):
            out[s] = str(t.user_attrs[SAME_AS])
        elif s in twin and t.user_attrs.get("epochs") == twin[s].user_attrs.get("epochs"):
            out[s] = TWIN_OF[arm]
    return out


def _where(t: FrozenTrial) -> str:
    return f"trial #{t.number} ({t.user_attrs.get('point', '?')})"


def _arm_cells(arm: str, by_seed: dict[int, FrozenTrial], same: dict[int, str]) -> tuple[dict[str, Any], dict]:
    """One arm's cells in a row (final epoch the headline, the best epoch beside it) and its
    final accuracy by seed. Trials that are another arm's run (`same`: seed -> that arm) count
    for nothing here: the cell says whose run they are."""
    own = {s: t for s, t in by_seed.items() if s not in same}
    finals = {s: final_acc(t.user_attrs, _where(t)) for s, t in own.items()}
    acc, best = Spread.of(finals.values()), Spread.of(t.user_attrs["best_acc"] for t in own.values())
    twins = sorted(set(same.values()))
    text = acc.text() if acc else ""
    if twins:
        text = ("= " + ", ".join(twins) if not own
                else f"{text}; seed {', '.join(map(str, sorted(same)))} = {', '.join(twins)} (not counted)")
    cells = {**(acc.cells(arm) if acc else {f"{arm}_mean": None, f"{arm}_std": None}), arm: text,
             f"{arm}_seeds": len(own), f"{arm}_best": round(best.mean, 2) if best else None,
             f"{arm}_best_std": None if best is None or best.std is None else round(best.std, 2),
             f"{arm}_epochs": sorted({int(t.user_attrs["epochs"]) for t in by_seed.values()
                                      if "epochs" in t.user_attrs})}
    if twins and not own:
        cells[f"{arm}_same_as"] = twins[0]
    return cells, finals


def summary(study: optuna.Study, plan: dict) -> list[dict]:
    """One row per table row: per arm the final-epoch accuracy, mean ± sample std over seeds (the
    headline), the best epoch's mean (`{arm}_best`), its seeds and epochs; the scratch arms'
    paired differences from fine-tuning (`stats.paired`, `{arm}_vs_finetune_*`); the pruned net's
    parameters and MACs; the paper's numbers where cited."""
    done = _points(study)
    out = []
    for i, r in enumerate(plan["rows"]):
        row: dict[str, Any] = {"row": r["label"], "method": r["method"], "network": r["arch"], "data": r["data"],
                               "ratio": r["settings"].get("ratio", r["settings"].get("variant", "")),
                               "width": r["settings"].get("width", 1.0),
                               "paper_source": r.get("paper_source") or ""}
        trials = {arm: _arm_trials(done, plan, i, arm) for arm in plan["arms"]}
        finals = {}
        for arm, ts in trials.items():
            cells, finals[arm] = _arm_cells(arm, ts, _same_runs(arm, trials))
            row.update(cells)
            if ARMS[arm].is_proposal and ts:
                own = list(ts.values())
                row["params"] = int(np.mean([t.user_attrs["params"] for t in own]))
                row["pruned_params"] = int(np.mean([t.user_attrs["pruned_params"] for t in own]))
                row["pruned_macs"] = int(np.mean([t.user_attrs["pruned_macs"] for t in own]))
                if r.get("paper"):  # beside a paper's numbers: the nets counted as its scripts count them
                    row.update(_paper_counts(row, own[0]))
            paper = (r.get("paper") or {}).get(arm)
            row[f"paper_{arm}"] = paper if paper is not None else ""
        for arm in (a for a in COMPARED if a in finals and REFERENCE in finals):
            diff = paired(finals[arm], finals[REFERENCE])
            if diff is not None:
                row.update(diff.numbers(f"{arm}_vs_{REFERENCE}"),
                           **{f"{arm}_vs_{REFERENCE}": diff.sentence(arm, "fine-tuning")})
        out.append(row)
    return out


def _paper_counts(row: dict, proposal: FrozenTrial) -> dict[str, int]:
    """The row's nets counted as the original scripts count them (`counting.original_params`:
    their channel-selection layers register one index per stream channel as parameters). Channel
    pruning keeps every stream's width, so the pruned net has the base net's selection entries."""
    base = ArchSpec.from_dict(proposal.user_attrs["base_spec"], "the proposal's base spec")
    extra = original_params(base) - count(base).params
    return {"paper_count_params": row["params"] + extra, "paper_count_pruned_params": row["pruned_params"] + extra}


def verdicts(rows: list[dict], plan: dict) -> list[str]:
    """Per row: does training from scratch match the fine-tuned net (the paper's claim)? Each
    scratch arm's paired difference from fine-tuning over the seeds both ran (each arm's trial
    of seed s starts from the proposal of seed s), with its 95% CI and verdict word; a
    Scratch-B that is Scratch-E's run is said once, not compared twice."""
    lines = []
    for r in rows:
        parts = [r[f"{a}_vs_{REFERENCE}"] for a in COMPARED if r.get(f"{a}_vs_{REFERENCE}")]
        parts += [f"{a} is {r[f'{a}_same_as']}'s run (the same epochs): compared once, as {r[f'{a}_same_as']}"
                  for a in COMPARED if r.get(f"{a}_same_as")]
        if parts:
            lines.append(f"{r['row']}: " + "; ".join(parts))
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


def _twins(rows: list[dict], arms: list[str]) -> list[str]:
    """"ROW (scratch-b = scratch-e)" for each row whose arm is another's run."""
    return [f"{r['row']} ({a} = {r[f'{a}_same_as']})" for r in rows for a in arms if r.get(f"{a}_same_as")]


def _about(arms: list[str], rows: list[dict]) -> str:
    """What the report shows, for its header."""
    counts = [r[f"{a}_seeds"] for r in rows for a in arms if r.get(f"{a}_seeds")]
    twins = _twins(rows, arms)
    return (f"Test accuracy (%) at the final epoch (the headline), {STD_NOTE} {over_seeds(counts)}; "
            "`{arm}_best`: the mean at the best epoch (the maximum over epochs: selected on the test set, so not the "
            "headline). Arms: " + "; ".join(f"**{a}**: {ARMS[a].about}" for a in arms)
            + ". `*_epochs`: the epochs each arm trained. `paper_*`: the paper's number where a source"
            " was opened (paper_source); empty otherwise, and left out of this file when no row cites"
            " one. report.csv and report.json also hold each arm's mean, std and seed count, the best epoch's mean"
            f" and std, and each comparison's numbers (`{{arm}}_vs_{REFERENCE}_diff`, `_diff_std`, `_ci_low`,"
            " `_ci_high`, `_n`, `_verdict`)."
            + ("\n\nShown once: a Scratch-B that trains for exactly Scratch-E's epochs is the same run (as its trial"
               " records, or as the two trials' epochs show); its cell reads \"= scratch-e\", it has no bar of its own"
               " in table.html and is not compared twice: "
               + ", ".join(twins) + "." if twins else ""))


PAPER_COUNTS = (" `paper_count_params`, `paper_count_pruned_params`: the row's nets counted as the original scripts"
                " count them, to read beside the paper's numbers (their channel-selection layers register one index"
                " per stream channel as parameters; archsearch's `params` leaves that index out: PreResNet-164"
                " 1,711,338 there, 1,703,258 here).")
COMPARE_TEXT = ("\nScratch against fine-tuned (final epoch, paired by seed: each arm's trial of seed s starts from"
                " the proposal of seed s; the mean difference in points with its 95% Student-t CI; 'beats' and"
                " 'falls short of': the interval excludes 0; 'matches': it spans 0, no clear difference):\n\n")


def write_outputs(study: optuna.Study, plan: dict, st, out_dir: Path, png: bool = False) -> tuple[Path, Path]:
    """report.md/.csv/.json in the paper's layout and table.html (+ .png): bars per arm with
    error bars, one group per row. `st`: the study's `runner.status` (its trials line and failures)."""
    rows = summary(study, plan)
    s = plan["spec"]
    prov = provenance(study, plan)
    arms = plan["arms"]
    lines = verdicts(rows, plan)
    cited = any(r["paper_source"] for r in rows)
    header = (f"# {s.get('title') or s['name']}\n\n{prov}\n\n"
              + f"- trials: {st.line()}\n"
              + "".join(f"- failed trial #{n}: {why}\n" for n, why in st.failures)
              + "\n" + _about(arms, rows) + (PAPER_COUNTS if cited else "") + "\n"
              + (COMPARE_TEXT + "".join(f"- {v}\n" for v in lines) if lines else ""))
    cols = (["row", "network", "data", "ratio", "width", "params", "pruned_params"] + arms
            + [f"{a}_best" for a in arms] + [f"{a}_epochs" for a in arms] + [f"paper_{a}" for a in arms]
            + ["paper_count_params", "paper_count_pruned_params", "paper_source"])
    numeric = ([f"{a}_{k}" for a in arms for k in ("mean", "std", "seeds", "best_std")]
               + [f"{a}_vs_{REFERENCE}_{k}" for a in COMPARED if a in arms and REFERENCE in arms
                  for k in ("diff", "diff_std", "ci_low", "ci_high", "n", "verdict")])
    # report.md: the readable columns (the paper's only where some row cites it); .csv/.json: all
    md_cols = [c for c in cols if cited or not c.startswith("paper_")]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tables(rows, cols + numeric, out_dir / "report", header, md_cols=md_cols)
    html = out_dir / "table.html"
    colours = {a: ARMS[a].color for a in arms}
    twins = _twins(rows, arms)
    caption = prov + (f"; one bar for the same run: {', '.join(twins)}" if twins else "")
    write_html(table_figure(rows, arms, colours=colours, title=s.get("title") or s["name"], caption=caption), html)
    if png:
        render_png(html, html.with_suffix(".png"))
    return out_dir / "report.md", html


__all__ = ["summary", "summary_markdown", "verdicts", "provenance", "write_outputs", "completed"]
