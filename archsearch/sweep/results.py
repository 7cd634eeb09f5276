"""A grid or search sweep's numbers and report: per-trial rows, per-(kind, generator, budget)
accuracy over seeds (`stats.accuracy_cells`: the final epoch is the headline, the best epoch a
column), each generator's paired difference from uniform (`stats.paired`), their provenance,
report.* and efficiency.html. A table sweep's report is `table_report.py`'s."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from ..compare import budget_tag, markdown_table, write_tables
from ..generate import GENERATORS
from ..measures import parse_budget
from ..errors import ArchsearchError
from ..plot import efficiency_figure, render_png, write_html
from ..redact import redact
from ..stats import STD_NOTE, accuracy_cells, final_acc, over_seeds, paired
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
                     "params": u.get("params"), "macs": u.get("macs"),
                     # a trial measured since latency was recorded (older studies' rows keep their columns)
                     **({} if u.get("latency") is None else {"latency_ms": round(1e3 * u["latency"], 4)}),
                     "best_acc": u.get("best_acc"),
                     "final_acc": u.get("final_acc"), "epochs": u.get("epochs"),
                     "train_seconds": u.get("train_seconds"), "stages": u.get("stages"), "widths": u.get("widths"),
                     "reference": u.get("reference", ""),
                     # a trial failed without a reason was failed by the heartbeat check: its worker was lost
                     "fail_reason": u.get("fail_reason") or (WORKER_LOST if t.state == TrialState.FAIL else ""),
                     "search_params": {k: round(v, 4) for k, v in t.params.items()} if t.params and
                     "stage0" in t.params else None})
    return rows


BASELINE = "uniform"  # the generator a README's "win" is measured against, seed by seed
VS = f"vs_{BASELINE}"  # the prefix of a row's comparison with it
ABOUT = ("final_acc: test accuracy (%) at the final epoch, the headline (rows sort by it, the efficiency plot "
         "draws it); best_acc: at the best epoch, in its own column (the maximum over epochs: selected on the test "
         "set); params: non-zero parameters (sparse nets count kept weights only); MACs per image.")
ABOUT_PAIRED = (f"Per kind and budget, each generator's final accuracy minus {BASELINE}'s, seed by seed (the seeds "
                f"both have): the mean difference in points and its 95% Student-t confidence interval. 'beats' and "
                f"'falls short of': the interval excludes 0; 'matches': it spans 0 (no clear difference). "
                f"report.csv and report.json hold the numbers ({VS}_diff, _diff_std, _ci_low, _ci_high, _n, _verdict).")


def _groups(study: optuna.Study) -> dict[tuple, list[dict]]:
    """The completed trial rows of each (kind, generator, budget), one per grid point (a point
    retried after a lost worker counts once); a search's points each on their own, keyed by
    trial number."""
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
    return groups


def _finals(rs: list[dict]) -> dict[int, float]:
    """Seed -> final-epoch accuracy (%) of one group's trials (`stats.final_acc` refuses a trial
    that recorded none)."""
    return {r["seed"]: final_acc(r, f"trial #{r['trial']} ({r['kind']} {r['generator']} "
                                    f"{budget_tag(r['budget'])} seed {r['seed']})") for r in rs}


def summary_rows(study: optuna.Study) -> list[dict]:
    """Per (kind, generator, budget): the final-epoch accuracy over seeds (the headline), the best
    epoch's, and, for a grid generator other than uniform, its paired difference from uniform at
    the same kind and budget (`stats.paired`: the `vs_uniform_*` numbers)."""
    groups = _groups(study)
    out = []
    for (kind, gen, b), rs in groups.items():
        first = rs[0]
        finals = _finals(rs)
        row = {"kind": kind, "generator": gen if gen != "search" else (first["reference"] or "search").split(" ")[0],
               "budget": budget_tag(first["budget"]), "budget_value": first["budget"],
               "params": int(np.mean([r["params"] for r in rs])), "macs": int(np.mean([r["macs"] for r in rs])),
               **_latency_cell(rs),
               "epochs": first["epochs"],
               **accuracy_cells(final=list(finals.values()), best=[r["best_acc"] for r in rs]),
               "stages": first["stages"], "trial": first["trial"],
               "search_params": first["search_params"]}
        base = groups.get((kind, BASELINE, b)) if gen not in (BASELINE, "search") else None
        diff = paired(finals, _finals(base)) if base else None
        if diff is not None:
            row.update(diff.numbers(VS), **{VS: diff.sentence(row["generator"], BASELINE)})
        out.append(row)
    order = [*GENERATORS, "pattern", "search"]  # the registry's order, then search mode's points
    out.sort(key=lambda r: (r["kind"], order.index(r["generator"]) if r["generator"] in order else 99,
                            _budget_order(r["budget_value"]), -r["final_acc_mean"]))
    return out


def _latency_cell(rs: list[dict]) -> dict:
    """The group's measured latency (ms; the median over its trials, one net per seed), where
    its trials measured one (sweeps before latency was recorded did not)."""
    got = [r["latency_ms"] for r in rs if r.get("latency_ms") is not None]
    return {"latency_ms": round(float(np.median(got)), 4)} if got else {}


def _budget_order(b) -> tuple:
    """Budgets in order of their bounds' values: a number, or a budget's text."""
    return (0, float(b)) if not isinstance(b, str) else (1, *(v for _, v in parse_budget(b).bounds))


def comparison_lines(rows: list[dict]) -> list[str]:
    """The paired comparisons with uniform as sentences, one per (kind, budget, generator)."""
    return [f"{r['kind']} {r['budget']}: {r[VS]}" for r in rows if r.get(VS)]


SUMMARY_COLS = ["kind", "generator", "budget", "params", "macs", "latency_ms", "epochs", "seeds", "final_acc",
                "best_acc", "stages"]
NUMERIC_COLS = (["final_acc_mean", "final_acc_std", "best_acc_mean", "best_acc_std"]
                + [f"{VS}_{k}" for k in ("diff", "diff_std", "ci_low", "ci_high", "n", "verdict")])
TRIAL_COLS = ["trial", "state", "kind", "generator", "budget", "seed", "params", "macs", "latency_ms", "best_acc",
              "final_acc", "epochs", "train_seconds", "fail_reason"]


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
    lines = comparison_lines(rows)
    header = (f"# {s.get('title') or s['name']}\n\n{prov}\n\n"
              + "".join(f"- pattern ({k}): {v}\n" for k, v in pats.items())
              + f"- trials: {st.line()}\n"
              + "".join(f"- failed trial #{n}: {why}\n" for n, why in st.failures)
              + f"\n{ABOUT} Over seeds: {STD_NOTE}, {over_seeds(r['seeds'] for r in rows)}.\n"
              + (f"\n## Paired against {BASELINE} (final epoch)\n\n{ABOUT_PAIRED}\n\n"
                 + "".join(f"- {v}\n" for v in lines) if lines else "")
              + "\n## Per generator and budget")
    cols = _measured(SUMMARY_COLS, rows) + list(columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tables(rows, cols + NUMERIC_COLS, out_dir / "report", header, md_cols=cols)
    trials = trial_rows(study)
    write_tables(trials, _measured(TRIAL_COLS, trials), out_dir / "trials")
    html = out_dir / "efficiency.html"
    write_html(efficiency_figure(rows, x=x, title=s.get("title") or s["name"], caption=prov), html)
    if png:
        render_png(html, html.with_suffix(".png"))
    return out_dir / "report.md", html


def _measured(cols: list[str], rows: list[dict]) -> list[str]:
    """`cols` without latency_ms where no row has one (a study from before latency was recorded)."""
    return [c for c in cols if c != "latency_ms" or any(r.get("latency_ms") is not None for r in rows)]


def summary_table(study) -> str:
    """The summary as the Markdown table `sweep run` and `report` print."""
    return markdown_table(summary_rows(study), ["kind", "generator", "budget", "params", "macs", "seeds",
                                                "final_acc", "best_acc", f"{VS}_verdict"])


def efficiency(rows: list[dict], study, plan: dict, out_file, *, x: str, png: bool, title: str | None) -> None:
    """efficiency.html (+ .png) of `rows` to `out_file` (`archsearch plot efficiency`)."""
    s = plan["spec"]
    write_html(efficiency_figure(rows, x=x, title=title or s.get("title") or s["name"],
                                 caption=provenance(study, plan, rows)), out_file)
    if png:
        render_png(out_file, Path(out_file).with_suffix(".png"))
