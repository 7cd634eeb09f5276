"""Generate a family of architectures and train them from scratch: the comparison
behind `archsearch transfer --train`. Generation and training stay separate functions; the
training of each point is the experiment driver's (`archsearch.experiment`) and the statistics
over seeds are `archsearch.stats`', which the sweeps use too.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ._io import write_json, write_text
from .config import TrainConfig
from .counting import count
from .data import Dataset
from .errors import ArchsearchError
from . import latency as lat
from .latency import LatencyMeasure, LatencyTable
from .measures import Budget, fmt_value, parse_budget
from .experiment import Point, point_schedule, stage_summary, train_point
from .generate import generate_checked, generator_label
from .spec import ArchSpec
from .stats import accuracy_cells
from .train import EpochStats


def parse_fractions(text: str) -> list[float]:
    try:
        fr = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ArchsearchError(f"fractions {text!r} must be numbers like 0.05,0.1,0.2") from None
    if not fr or any(not 0 < f <= 1 for f in fr):
        raise ArchsearchError(f"fractions must lie in (0, 1], got {text!r}")
    return fr


def budget_tag(b: float | str | Budget) -> str:
    """A budget's label in tables and file names: '500K' for a number (a count), `Budget.tag` for
    a budget or a budget's text (a sweep plan's latency or several bounds)."""
    if isinstance(b, str):
        b = parse_budget(b)
    return b.tag() if isinstance(b, Budget) else fmt_value("params", float(b))


@dataclass
class Generated:
    generator: str
    budget: Budget
    spec: ArchSpec | None  # None: this (generator, budget) could not be made; `failure` says why
    error: float           # on the binding measure (latency: as measured end to end)
    path: Path | None = None
    failure: str = ""
    binding: str = ""      # the measure whose bound binds
    latency: float | None = None           # measured end to end (seconds), whatever the budget
    latency_estimate: float | None = None  # the table's, where a latency bound was solved on it


def generate_all(target: ArchSpec, target_name: str, budgets: list[Budget], *, pattern: dict | None,
                 baselines: list[str], sparse: bool = False, floor: float = 0.0, round_to: int = 1, seed: int = 0,
                 out_dir: str | os.PathLike | None = None, depth: bool = False,
                 latency: LatencyMeasure | None = None) -> list[Generated]:
    """One spec per (generator, budget): the pattern's (guided or transferred) and each baseline.
    A budget that one generator cannot meet is recorded as a failure (spec None) and the
    others go on; the caller reports the failures and exits non-zero at the end. `latency`:
    the measure every written net's latency is taken with (and a latency bound solved and
    checked with); None measures none, and refuses a latency bound."""
    data = target_name.split("-")[1]  # the arch as typed may be an alias (vgg16-in): compare the spec's own name
    kinds = ([generator_label(pattern, target.name, data)] if pattern is not None else []) + list(baselines)
    if latency is None and any("latency" in b.measures for b in budgets):
        raise ArchsearchError("a latency budget needs a latency measure")
    table = LatencyTable(latency) if latency is not None else None
    out = []
    for b in budgets:
        for kind in kinds:
            try:
                s = generate_checked(kind, target, b, table=table, pattern=pattern, sparse=sparse, floor=floor,
                                     round_to=round_to, seed=seed, target_name=target_name, depth=depth)
            except ArchsearchError as e:
                out.append(Generated(kind, b, None, float("nan"), failure=str(e)))
                continue
            g = Generated(kind, b, s.spec, s.error, binding=s.binding, latency_estimate=s.costs.get("latency"))
            if table is not None:
                g.latency = s.costs.get("latency_measured") or lat.measure_spec(s.spec, table.measure)
                s.spec.meta["latency"] = {"seconds": g.latency, "measure": table.measure.to_dict()}
            if out_dir is not None:
                g.path = Path(out_dir) / f"{kind}-{budget_tag(b)}.json"
                s.spec.save(g.path)
            out.append(g)
    if table is not None:
        table.save()
    return out


def spec_row(g: Generated) -> dict:
    """A written spec's row: its three measures (latency measured end to end; with a latency
    bound also the table's estimate and its error), which bound binds, and its error there."""
    row = {"generator": g.generator, "budget": budget_tag(g.budget), "binding": g.binding}
    if g.spec is None:
        return {**row, "params": "", "macs": "", "latency_ms": "", "stages": "", "error_pct": "", "spec": "",
                "failure": g.failure}
    c = count(g.spec)
    ms = lambda v: "" if v is None else round(1e3 * v, 4)  # noqa: E731
    est_err = "" if g.latency_estimate is None or not g.latency else round(100 * (g.latency_estimate / g.latency - 1), 2)
    return {**row, "params": c.params_nonzero, "macs": c.macs_nonzero, "latency_ms": ms(g.latency),
            "latency_est_ms": ms(g.latency_estimate), "est_error_pct": est_err, "stages": stage_summary(g.spec),
            "error_pct": round(100 * g.error, 3), "spec": str(g.path) if g.path else ""}


def markdown_table(rows: list[dict], cols: list[str]) -> str:
    def cell(v) -> str:  # a '|' or a line break in a value (a failure's reason) would break the row
        if v is None:  # no value (a failed trial's accuracy): an empty cell, not "None"
            return ""
        if isinstance(v, float):  # 78.97999999999999 -> 78.98, 92313.0 -> 92313, 0.125 stays (the CSV keeps all)
            r = repr(round(v, 2) if abs(v) >= 1 else float(f"{v:.3g}"))
            v = r[:-2] if r.endswith(".0") else r
        return " ".join(str(v).split()).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], cols: list[str], stem: Path, header: str = "",
                 md_cols: list[str] | None = None) -> None:
    """STEM.md (the header, then a table of md_cols: the columns a reader wants, default all),
    STEM.csv (every column in cols) and STEM.json (the rows as they are)."""
    md = cols if md_cols is None else md_cols
    write_text(stem.with_suffix(".md"), (header + "\n\n" if header else "") + markdown_table(rows, md))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in cols})
    write_text(stem.with_suffix(".csv"), buf.getvalue())
    write_json(stem.with_suffix(".json"), rows)


@dataclass
class Trained:
    generator: str
    budget: Budget
    params: int
    macs: int
    latency: float | None = None  # seconds, measured end to end when the spec was written
    accs: list[float] = field(default_factory=list)     # best test accuracy per seed
    finals: list[float] = field(default_factory=list)   # final test accuracy per seed
    epochs: int = 0
    stages: list = field(default_factory=list)


def train_all(gens: list[Generated], data: Dataset, *, config: TrainConfig, schedule_kind: str, seeds: int,
              base: ArchSpec, out_dir: str | os.PathLike, device: str = "auto",
              progress: Callable[[str], Callable[[EpochStats], None]] | None = None,
              log: Callable[[str], None] | None = None) -> list[Trained]:
    """Train every generated spec from scratch for `seeds` seeds under the resolved `config`
    (resumable run dirs)."""
    results = []
    total = len(gens) * seeds
    done = 0
    for g in gens:
        sched = point_schedule(config, schedule_kind, g.spec, base)
        c = count(g.spec)
        t = Trained(g.generator, g.budget, c.params_nonzero, c.macs_nonzero, g.latency, epochs=sched.epochs,
                    stages=stage_summary(g.spec))
        for seed in range(seeds):
            label = f"[{done + 1}/{total}] {g.generator} {budget_tag(g.budget)} seed {seed}"
            run = Path(out_dir) / f"{g.generator}-{budget_tag(g.budget)}" / f"seed{seed}"
            r = train_point(Point(g.spec, sched, seed, run), data, device=device,
                            checkpoint_every=config.checkpoint_every, progress=progress(label) if progress else None)
            t.accs.append(r.best_acc)
            t.finals.append(r.final_acc)
            done += 1
            if log:
                log(f"{label}: best {100 * r.best_acc:.2f}% final {100 * r.final_acc:.2f}%")
        results.append(t)
    return results


def trained_rows(results: list[Trained]) -> list[dict]:
    """One row per (generator, budget): its net and its accuracy over seeds (`stats.accuracy_cells`:
    the final epoch first, then the best)."""
    return [{"generator": t.generator, "budget": budget_tag(t.budget), "params": t.params, "macs": t.macs,
             "latency_ms": "" if t.latency is None else round(1e3 * t.latency, 4), "epochs": t.epochs, **accuracy_cells(final=[f * 100 for f in t.finals], best=[a * 100 for a in t.accs]),
             "stages": t.stages} for t in results]
