"""A grid or search sweep's numbers and report: per-trial rows, per-(kind, generator, budget)
means over seeds (`experiment.accuracy_cells`), their provenance, report.* and efficiency.html.
A table sweep's report is `table.py`'s."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from ..compare import budget_tag, markdown_table, write_tables
from ..experiment import accuracy_cells
from ..generate import GENERATORS
from ..errors import ArchsearchError
from ..plot import efficiency_figure, render_png, write_html
from ..redact import redact
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
    """Mean ± std over seeds (`experiment.accuracy_cells`) of each (kind, generator, budget) — completed trials only,
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
        first = rs[0]
        out.append({"kind": kind, "generator": gen if gen != "search" else (first["reference"] or "search").split(" ")[0],
                    "budget": budget_tag(float(first["budget"])), "budget_value": first["budget"],
                    "params": int(np.mean([r["params"] for r in rs])), "macs": int(np.mean([r["macs"] for r in rs])),
                    "epochs": first["epochs"],
                    **accuracy_cells([r["best_acc"] for r in rs], [r["final_acc"] for r in rs]),
                    "stages": first["stages"], "trial": first["trial"],
                    "search_params": first["search_params"]})
    order = [*GENERATORS, "pattern", "search"]  # the registry's order, then search mode's points
    out.sort(key=lambda r: (r["kind"], order.index(r["generator"]) if r["generator"] in order else 99,
                            r["budget_value"], -r["best_acc_mean"]))
    return out


SUMMARY_COLS = ["kind", "generator", "budget", "params", "macs", "epochs", "seeds", "best_acc", "final_acc", "stages"]
NUMERIC_COLS = ["best_acc_mean", "best_acc_std", "final_acc_mean", "final_acc_std"]
TRIAL_COLS = ["trial", "state", "kind", "generator", "budget", "seed", "params", "macs", "best_acc", "final_acc",
              "epochs", "train_seconds", "fail_reason"]


def completed_rows(study: optuna.Study) -> list[dict]:
    """`summary_rows`, or one line if no trial has completed yet."""
    rows = summary_rows(study)
    if not rows:
        raise ArchsearchError(f"study {study.study_name} has no completed trials yet")
    return rows


def provenance(study, plan: dict, rows: list[dict]) -> str:
    """How a sweep's numbers were produced, for tables and figure captions."""
    s, tr = plan["spec"], plan["spec"]["train"]
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]

    def used(key: str, default: str = "?") -> list[str]:  # what the finished trials ran with
        return sorted({str(t.user_attrs.get(key, default)) for t in done}) or [default]

    epochs = sorted({int(r["epochs"]) for r in rows if r.get("epochs") is not None})
    seeds = sorted({int(t.user_attrs["seed"]) for t in done if "seed" in t.user_attrs})
    return (f"study {study.study_name}" + (f" (scale {s['scale']})" if s.get("scale") else "")
            + f"; target {s['target']} width {tr['width']}; {s['schedule']}, preset {tr['preset']}, "
            + (f"{epochs[0]} epochs" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]} epochs (per net)"
               if epochs else "epochs ?")
            + (f", train subset {tr['train_subset']}" if tr.get("train_subset") else "")
            + f"; {_seeds_text(seeds)}; {', '.join(used('device'))}, torch {', '.join(used('torch_version'))}; "
            f"archsearch {', '.join(used('archsearch_version', plan['archsearch_version']))}, {plan['created'][:10]}"
            + (f"; command: {redact(plan['command'])}" if plan.get("command") else ""))


def _seeds_text(seeds: list[int]) -> str:
    if not seeds:
        return "seeds ?"
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}..{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def write_outputs(study, plan: dict, st, out_dir: Path, *, x: str = "params", png: bool = False,
                  columns: list[str] = ()) -> tuple[Path, Path]:
    """report.md/.csv/.json, trials.* and efficiency.html (+ .png) of a grid or search sweep,
    with its provenance. `st`: the study's `runner.status`; `columns`: the mode's own."""
    rows = completed_rows(study)
    s = plan["spec"]
    pats = {f"{role} {k}": p["name"] + f" ({p['provenance'].get('scale', '')})"
            for role, d in plan["patterns"].items() for k, p in d.items()}
    prov = provenance(study, plan, rows)
    header = (f"# {s.get('title') or s['name']}\n\n{prov}\n\n"
              + "".join(f"- pattern ({k}): {v}\n" for k, v in pats.items())
              + f"- trials: {st.line()}\n"
              + "".join(f"- failed trial #{n}: {why}\n" for n, why in st.failures)
              + "\naccuracy: test accuracy (%) at the best epoch and the final epoch, mean ± std over seeds; "
              "params: non-zero parameters (sparse nets count kept weights only); MACs per image.")
    cols = SUMMARY_COLS + list(columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tables(rows, cols + NUMERIC_COLS, out_dir / "report", header, md_cols=cols)
    write_tables(trial_rows(study), TRIAL_COLS, out_dir / "trials")
    html = out_dir / "efficiency.html"
    write_html(efficiency_figure(rows, x=x, title=s.get("title") or s["name"], caption=prov), html)
    if png:
        render_png(html, html.with_suffix(".png"))
    return out_dir / "report.md", html


def summary_table(study) -> str:
    """The summary as the Markdown table `sweep run` and `report` print."""
    return markdown_table(summary_rows(study), ["kind", "generator", "budget", "params", "macs", "seeds",
                                                "best_acc", "final_acc"])


def efficiency(rows: list[dict], study, plan: dict, out_file, *, x: str, png: bool, title: str | None) -> None:
    """efficiency.html (+ .png) of `rows` to `out_file` (`archsearch plot efficiency`)."""
    s = plan["spec"]
    write_html(efficiency_figure(rows, x=x, title=title or s.get("title") or s["name"],
                                 caption=provenance(study, plan, rows)), out_file)
    if png:
        render_png(out_file, Path(out_file).with_suffix(".png"))
