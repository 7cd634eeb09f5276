"""Generate a family of architectures and train them from scratch: the comparison
behind `archsearch transfer --train`. Generation and training stay separate functions; the
training of each point is the experiment driver's (`archsearch.experiment`) and the statistics
over seeds are `archsearch.stats`', which the sweeps use too.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ._io import write_json, write_text
from .config import TrainConfig
from .counting import count
from .data import Dataset
from .errors import ArchsearchError
from .limits import MAX_BUDGET
from .experiment import Point, point_schedule, stage_summary, train_point
from .generate import generate, generator_label
from .spec import ArchSpec
from .stats import accuracy_cells
from .train import EpochStats


def parse_budgets(text: str) -> list[float]:
    """'0.5M,1M,2000K' -> [500000.0, 1000000.0, 2000000.0]."""
    mult = {"K": 1e3, "M": 1e6, "G": 1e9}
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(float(part[:-1]) * mult[part[-1].upper()] if part[-1].upper() in mult else float(part))
        except (ValueError, KeyError):
            raise ArchsearchError(f"budget {part!r} is not a number like 0.5M, 2M or 150000") from None
        if not (math.isfinite(out[-1]) and 0 < out[-1] <= MAX_BUDGET):
            raise ArchsearchError(f"budget {part!r} must be a positive finite number up to {MAX_BUDGET:g}")
    if not out:
        raise ArchsearchError("no budgets given")
    return out


def parse_fractions(text: str) -> list[float]:
    try:
        fr = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ArchsearchError(f"fractions {text!r} must be numbers like 0.05,0.1,0.2") from None
    if not fr or any(not 0 < f <= 1 for f in fr):
        raise ArchsearchError(f"fractions must lie in (0, 1], got {text!r}")
    return fr


def budget_tag(b: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if b >= div:
            return f"{b / div:.4g}{unit}"
    return f"{b:.4g}"


@dataclass
class Generated:
    generator: str
    budget: float
    spec: ArchSpec | None  # None: this (generator, budget) could not be made; `failure` says why
    error: float
    path: Path | None = None
    failure: str = ""


def generate_all(target: ArchSpec, target_name: str, budgets: list[float], *, pattern: dict | None,
                 baselines: list[str], by: str = "params", sparse: bool = False, floor: float = 0.0,
                 round_to: int = 1, seed: int = 0, out_dir: str | os.PathLike | None = None,
                 depth: bool = False) -> list[Generated]:
    """One spec per (generator, budget): the pattern's (guided or transferred) and each baseline.
    A budget that one generator cannot meet is recorded as a failure (spec None) and the
    others go on; the caller reports the failures and exits non-zero at the end."""
    data = target_name.split("-")[1]  # the arch as typed may be an alias (vgg16-in): compare the spec's own name
    kinds = ([generator_label(pattern, target.name, data)] if pattern is not None else []) + list(baselines)
    out = []
    for b in budgets:
        for kind in kinds:
            try:
                s = generate(kind, target, b, pattern=pattern, by=by, sparse=sparse, floor=floor, round_to=round_to,
                             seed=seed, target_name=target_name, depth=depth)
            except ArchsearchError as e:
                out.append(Generated(kind, b, None, float("nan"), failure=str(e)))
                continue
            g = Generated(kind, b, s.spec, s.error)
            if out_dir is not None:
                g.path = Path(out_dir) / f"{kind}-{budget_tag(b)}.json"
                s.spec.save(g.path)
            out.append(g)
    return out


def spec_row(g: Generated, by: str) -> dict:
    if g.spec is None:
        return {"generator": g.generator, "budget": budget_tag(g.budget), "by": by, "params": "", "macs": "",
                "stages": "", "error_pct": "", "spec": "", "failure": g.failure}
    c = count(g.spec)
    return {"generator": g.generator, "budget": budget_tag(g.budget), "by": by, "params": c.params_nonzero,
            "macs": c.macs_nonzero, "stages": stage_summary(g.spec), "error_pct": round(100 * g.error, 3),
            "spec": str(g.path) if g.path else ""}


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
    budget: float
    params: int
    macs: int
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
        t = Trained(g.generator, g.budget, c.params_nonzero, c.macs_nonzero, epochs=sched.epochs,
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
             "epochs": t.epochs, **accuracy_cells(final=[f * 100 for f in t.finals], best=[a * 100 for a in t.accs]),
             "stages": t.stages} for t in results]
