"""Sensitivity analysis: prune one unit at a time, test without retraining (Li et al. 2017).

Li et al. ("Pruning Filters for Efficient ConvNets", ICLR 2017, Sec. 4.4, Fig. 2(b) and 3)
prune each layer of a trained net on its own, at increasing ratios of its smallest-L1 filters,
test it without retraining, and call the layers whose accuracy falls fast *sensitive*: their
ResNet-56/110-A and -B skip those and prune the others. Here:

- a *unit* is one channel group of the family (`Family.groups`: a coupled group of a `tv.*`
  family is one) or, by stage, every group of a stage at once;
- at ratio r each of the unit's groups keeps its max(1, int(n x (1 - r))) highest-scoring
  channels (`allocation.per_layer`, the rule of l1norm's predefined ratios), ranked by the
  method's own criterion (`Proposer.criterion`: l1norm the filters' L1 norm, slimming BN
  |gamma|); the net is narrowed with its inherited weights (`channel_proposal`) and tested
  (`train.evaluate`, with the preset's test-time flip) on the whole test set or a fixed
  class-stratified subset;
- the base net is the proposer's own (`propose.trained_base`: the folder `extract` trains it
  in, so the two share it);
- each measured point is added to the journal `points.jsonl` at once (rewritten atomically: a
  re-run skips what it holds, Ctrl-C keeps it), then the CSV, the figure and the record are
  written from it;
- `derive` turns the curves into per-group ratios (each unit: the largest measured ratio whose
  drop stays within the threshold), and `save_pattern` prunes the base net at them by the same
  rule and writes that proposal's pattern (`patterns.extract`) to the library, its provenance
  naming the analysis.

    OUT/<proposer>/<key>/seed<N>/
        points.jsonl       the journal: one measured point a line
        sensitivity.csv    unit, stage (from 1), ratio, kept, of, accuracy (%), drop (points), params, macs
        sensitivity.html   one curve per unit (Plotly, offline)
        sensitivity.json   provenance, the unpruned accuracy, the derived ratios and pattern
        NAME.json          a copy of the derived pattern
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from . import __version__
from . import patterns as P
from ._io import RunLock, check_name, make_dirs, read_text, write_json, write_text
from .archs import build, get_family
from .counting import count
from .data import AnyDataset, load_dataset, stratified
from .errors import ArchsearchError
from .plot import render_png, sensitivity_figure, write_html
from .progress import EpochProgress, StepProgress
from .propose import (PROPOSERS, Proposal, Proposer, TrainedBase, base_run_dir, channel_proposal, resolve_settings,
                      trained_base)
from .propose.allocation import allocated_ratio, per_layer
from .schemas import SensitivityPoint, check
from .spec import ArchSpec
from .train import evaluate, resolve_device

BY = ("group", "stage")
DEFAULT_RATIOS = tuple(round(0.1 * k, 1) for k in range(1, 10))  # Li et al.'s Fig. 2: 10% .. 90%
# accuracy drop (points) a derived pattern accepts per unit: twice the ~0.5% that CIFAR-10 runs
# vary by (Network Slimming's README), so a unit within it is insensitive beyond run-to-run noise
DEFAULT_THRESHOLD = 1.0
UNPRUNED = "unpruned"  # the journal's name for the unpruned net (ratio 0)
JOURNAL = "points.jsonl"


# -- pure functions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Unit:
    """What is pruned at once: one channel group, or every group of a stage."""

    name: str                 # the group's module name, or stageK
    stage: int                # from 1
    groups: tuple[int, ...]   # indices into `Family.groups(base)`


def units(base: ArchSpec, by: str = "group") -> list[Unit]:
    """The units of `base`, in the family's group order (by stage: stage 1 first)."""
    groups = get_family(base.family).groups(base)
    if by == "group":
        return [Unit(g.name, g.stage + 1, (i,)) for i, g in enumerate(groups)]
    if by == "stage":
        return [Unit(f"stage{k + 1}", k + 1, tuple(i for i, g in enumerate(groups) if g.stage == k))
                for k in sorted({g.stage for g in groups})]
    raise ArchsearchError(f"--by must be one of {', '.join(BY)}, got {by!r}")


def check_ratios(ratios: Iterable[float]) -> tuple[float, ...]:
    """The ratios to measure, sorted, each once; each in (0, 1), else one line."""
    out = []
    for r in ratios:
        if not (isinstance(r, (int, float)) and math.isfinite(r) and 0 < r < 1):
            raise ArchsearchError(f"sensitivity ratios must be in (0, 1), got {r!r}")
        out.append(float(r))
    if not out:
        raise ArchsearchError("give at least one ratio to measure")
    return tuple(sorted(set(out)))


def criterion_of(method: Proposer) -> Callable:
    """The per-channel criterion `method` ranks a group's channels by; one line for a method
    without one (sparsity, depth, data-aware and at-initialisation methods)."""
    if method.criterion is None:
        have = ", ".join(m for m, p in PROPOSERS.items() if p.criterion is not None)
        what = {"sparsity": "prunes single weights", "depth": "removes blocks"}.get(
            method.kind, "has no per-channel criterion to rank a group's channels by on a trained net")
        raise ArchsearchError(f"sensitivity prunes channel groups one at a time, but {method.name} {what}; "
                              f"methods that rank channels: {have}")
    return method.criterion


def unit_ratios(n_groups: int, unit: Unit, ratio: float) -> list[float]:
    """One prune ratio per group: `ratio` for the unit's groups, 0 for every other."""
    return [ratio if i in unit.groups else 0.0 for i in range(n_groups)]


def prune_unit(model: torch.nn.Module, base: ArchSpec, scores: list[torch.Tensor], unit: Unit, ratio: float):
    """`model` with only `unit` pruned at `ratio`, each of its groups keeping its
    `kept_count(n, ratio)` highest-scoring channels: a `Pruned` (spec, inherited weights)."""
    keep = per_layer(scores, unit_ratios(len(scores), unit, ratio))
    return channel_proposal(model, base, [k.numpy() for k in keep])


def rows(points: dict[tuple[str, float], dict], unit_list: list[Unit], ratios: tuple[float, ...]) -> list[dict]:
    """The measured points of `unit_list` x `ratios` as table rows: accuracy in %, its drop from
    the unpruned net in points (rounded to 1e-6, so a drop equal to a threshold is not pushed
    over it by float error). Points not measured yet are left out."""
    base = points[(UNPRUNED, 0.0)]["acc"]
    out = []
    for u in unit_list:
        for r in ratios:
            p = points.get((u.name, r))
            if p is not None:
                out.append({"unit": u.name, "stage": u.stage, "ratio": r, "kept": p["kept"], "of": p["of"],
                            "accuracy": round(100 * p["acc"], 6), "drop": round(100 * (base - p["acc"]), 6),
                            "params": p["params"], "macs": p["macs"]})
    return out


def derive(table: list[dict], unit_list: list[Unit], threshold: float,
           max_ratio: float | None = None) -> dict[str, float]:
    """Per unit, the largest measured ratio (at most `max_ratio`) whose accuracy drop is at most
    `threshold` points, else 0: Li et al. prune the insensitive layers and skip the sensitive."""
    return {u.name: max((r["ratio"] for r in table if r["unit"] == u.name and r["drop"] <= threshold
                         and (max_ratio is None or r["ratio"] <= max_ratio)), default=0.0) for u in unit_list}


def group_ratios(unit_list: list[Unit], per_unit: dict[str, float], n_groups: int) -> list[float]:
    """One prune ratio per channel group from the units' ratios."""
    out = [0.0] * n_groups
    for u in unit_list:
        for i in u.groups:
            out[i] = per_unit[u.name]
    return out


def csv_text(table: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["unit", "stage", "ratio", "kept", "of", "accuracy", "drop", "params", "macs"])
    w.writeheader()
    w.writerows(table)
    return buf.getvalue()


# -- the journal -------------------------------------------------------------------------------
def read_points(path: Path) -> dict[tuple[str, float], dict]:
    """The points measured so far; a line that is not a valid point is measured again."""
    if not path.exists():
        return {}
    out = {}
    for line in read_text(path, "sensitivity journal").splitlines():
        try:
            d = json.loads(line)
            check(SensitivityPoint, d, str(path))
        except (ValueError, ArchsearchError):
            continue
        out[(d["unit"], d["ratio"])] = d
    return out


def write_points(path: Path, points: dict[tuple[str, float], dict]) -> None:
    write_text(path, "".join(json.dumps(p, allow_nan=False) + "\n" for p in points.values()))


# -- the driver --------------------------------------------------------------------------------
@dataclass
class Analysis:
    """A sensitivity analysis, every input checked (`prepare`) before any training."""

    source: str                    # the proposer spec, e.g. l1norm-resnet56-c10
    method: Proposer
    settings: dict                 # the proposer's keyword settings (what decides the base net)
    by: str
    ratios: tuple[float, ...]
    units: list[Unit]
    seed: int
    data: AnyDataset
    test_indices: np.ndarray | None  # a fixed class-stratified test subset (sorted indices); None: all
    test_images: int | None
    workdir: str
    device: str
    out: Path                      # OUT/<proposer>/<key>/seed<N>
    threshold: float
    max_ratio: float | None
    pattern_name: str
    library: Path
    header: list[str] = field(default_factory=list)


def prepare(source: str, *, by: str = "group", ratios: Iterable[float] = DEFAULT_RATIOS,
            test_images: int | None = None, seed: int = 0, workdir: str = "runs/proposals",
            out: str = "runs/sensitivity", threshold: float = DEFAULT_THRESHOLD, max_ratio: float | None = None,
            name: str | None = None, library: str | None = None, data_dir: str | None = None, download: bool = True,
            device: str = "auto", **settings) -> Analysis:
    """Check everything and load the data; `settings`: preset, width, epochs, sparsity,
    train_subset (what decides the base net; None: the method's or the preset's)."""
    pn, method, resolved, schedule, base = resolve_settings(source, **settings)
    if pn.variant is not None:
        raise ArchsearchError(f"{source} names variant {pn.variant}, whose ratios are fixed; sensitivity measures "
                              f"its own: give {pn.method}-{pn.target}")
    crit = criterion_of(method)
    try:  # a family the criterion cannot score: one line now, not after training
        crit(build(base), base)
    except ArchsearchError as e:
        raise ArchsearchError(f"{method.name} cannot rank the channels of {base.name}: {e}") from None
    ratios = check_ratios(ratios)
    unit_list = units(base, by)
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold >= 0):
        raise ArchsearchError(f"the threshold is an accuracy drop in points, 0 or more, got {threshold!r}")
    if max_ratio is not None and not (math.isfinite(max_ratio) and 0 < max_ratio < 1):
        raise ArchsearchError(f"--max-ratio must be in (0, 1), got {max_ratio!r}")
    pat_name = check_name(f"{pn}.sens" if name is None else name, "pattern name")
    resolve_device(device)
    lib = make_dirs(Path(library) if library else P.default_write_dir())
    data = load_dataset(pn.target.data, data_dir, download=download)
    labels = data.test.labels if data.streaming else data.y_test
    idx = None if test_images is None or test_images >= data.n_test else stratified(
        labels, data.num_classes, test_images, seed=0, what="a test subset")
    base_dir = base_run_dir(workdir, base, pn.target.data, schedule, method.hooks(base, resolved),
                            resolved.train_subset, seed)
    ident = [str(base_dir.resolve()), method.name, by, None if idx is None else len(idx)]
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:8]
    folder = (Path(out) / str(pn) / f"{by}-{resolved.preset}-w{resolved.width:g}-e{schedule.epochs}-{key}"
              / f"seed{seed}")
    a = Analysis(str(pn), method, settings, by, ratios, unit_list, seed, data, idx,
                 None if idx is None else len(idx), workdir, device, folder, float(threshold), max_ratio, pat_name, lib)
    done = read_points(folder / JOURNAL)
    todo = sum((u.name, r) not in done for u in unit_list for r in ratios) + ((UNPRUNED, 0.0) not in done)
    trained = (base_dir / "result.json").exists()
    a.header = [f"{pn}: {len(unit_list)} {by}s x {len(ratios)} ratios, ranked by {crit.__name__}, tested without "
                f"retraining on {len(labels) if idx is None else len(idx)} test images; {todo} point(s) to measure "
                f"in {folder}",
                f"base net: {resolved.preset} preset, width {resolved.width:g}, {schedule.epochs} epochs, seed {seed} "
                f"({'reused' if trained else 'to train'}) in {base_dir}"]
    return a


@dataclass
class Measured:
    base: TrainedBase
    scores: list[torch.Tensor]
    points: dict[tuple[str, float], dict]
    table: list[dict]
    unpruned: float               # accuracy of the unpruned net on the analysis's test images


def measure(a: Analysis, log: Callable[[str], None] = lambda line: None) -> Measured:
    """Train (or reuse) the base net, then measure every (unit, ratio) not in the journal yet,
    adding each to it as it is measured."""
    tb = trained_base(a.source, a.data, seed=a.seed, workdir=a.workdir, device=a.device,
                      progress=EpochProgress(f"{a.source} base net seed {a.seed}"), **a.settings)
    model, base, dev = tb.model.eval(), tb.spec, resolve_device(a.device)
    scores = a.method.criterion(model, base)

    def test(spec: ArchSpec, state: dict) -> float:
        return evaluate(spec, state, a.data, dev, tta_flip=tb.schedule.tta_flip, indices=a.test_indices)

    make_dirs(a.out)
    with RunLock(a.out, "sensitivity folder"):
        points = read_points(a.out / JOURNAL)
        todo = [(u, r) for u in a.units for r in a.ratios if (u.name, r) not in points]
        total = len(a.units) * len(a.ratios) + 1
        step = StepProgress(f"{a.source} sensitivity", total, done=total - len(todo) - ((UNPRUNED, 0.0) not in points))
        if (UNPRUNED, 0.0) not in points:
            t0, c = time.perf_counter(), count(base)
            points[(UNPRUNED, 0.0)] = {"unit": UNPRUNED, "ratio": 0.0, "kept": sum(base.widths), "of": sum(base.widths),
                                       "acc": test(base, model.state_dict()), "params": c.params, "macs": c.macs,
                                       "seconds": round(time.perf_counter() - t0, 3)}
            write_points(a.out / JOURNAL, points)
            step(f"unpruned {100 * points[(UNPRUNED, 0.0)]['acc']:.2f}%")
        for u, r in todo:
            t0 = time.perf_counter()
            pruned = prune_unit(model, base, scores, u, r)
            c = count(pruned.spec)
            acc = test(pruned.spec, pruned.state)
            points[(u.name, r)] = {"unit": u.name, "ratio": r, "kept": sum(pruned.spec.widths[i] for i in u.groups),
                                   "of": sum(base.widths[i] for i in u.groups), "acc": acc, "params": c.params,
                                   "macs": c.macs, "seconds": round(time.perf_counter() - t0, 3)}
            write_points(a.out / JOURNAL, points)
            step(f"{u.name} at {r:g}: {100 * acc:.2f}%")
    if not todo:
        log(f"all {total} points measured before; reusing them from {a.out / JOURNAL}")
    return Measured(tb, scores, points, rows(points, a.units, a.ratios), points[(UNPRUNED, 0.0)]["acc"])


@dataclass
class Derived:
    pattern: dict
    path: Path                    # in the library
    unit_ratios: dict[str, float]
    pruned_acc: float             # the derived net's, whole test set, no retraining


def derive_pattern(a: Analysis, m: Measured, command: str) -> Derived:
    """Prune the base net at the derived per-group ratios (the measured rule, the method's
    criterion), test it on the whole test set, and save its pattern to the library (and a copy
    beside the analysis); the provenance says it came from this analysis, at this threshold."""
    tb = m.base
    per_unit = derive(m.table, a.units, a.threshold, a.max_ratio)
    ratios = group_ratios(a.units, per_unit, len(m.scores))
    keep = [k.numpy() for k in per_layer(m.scores, ratios)]
    pruned = channel_proposal(tb.model, tb.spec, keep, layer_ratios=ratios)
    pruned_acc = evaluate(pruned.spec, pruned.state, a.data, resolve_device(a.device), tta_flip=tb.schedule.tta_flip)
    settings = replace(tb.settings, ratio=allocated_ratio(tb.spec, ratios), layer_ratios=ratios)
    r = tb.result
    prop = Proposal(proposer=a.source, method=a.method.name, kind="channels", seed=a.seed, settings=settings.record(),
                    spec=pruned.spec, base_spec=tb.spec, base_acc=r.best_acc, base_final_acc=r.final_acc,
                    pruned_acc=pruned_acc, info=pruned.info, run_dir=str(a.out), base_epochs=r.epochs,
                    base_seconds=r.train_seconds, device=r.device_name, torch_version=torch.__version__,
                    archsearch_version=__version__,
                    date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    pat = P.extract([prop], name=a.pattern_name, command=command)
    pat["provenance"]["sensitivity"] = {
        "threshold": a.threshold, "by": a.by, "ratios": list(a.ratios), "max_ratio": a.max_ratio,
        "test_images": a.test_images, "criterion": a.method.criterion.__name__,
        "record": str(a.out / "sensitivity.json")}
    path = P.save_pattern(pat, a.library / f"{a.pattern_name}.json")
    P.save_pattern(pat, a.out / f"{a.pattern_name}.json")
    P.record_last(path)
    return Derived(pat, path, per_unit, pruned_acc)


def write_outputs(a: Analysis, m: Measured, d: Derived, command: str, png: bool = False) -> list[Path]:
    """sensitivity.csv, sensitivity.html (+ .png) and sensitivity.json in the analysis folder."""
    write_text(a.out / "sensitivity.csv", csv_text(m.table))
    html = a.out / "sensitivity.html"
    shown = f"{a.test_images or a.data.n_test} test images" + (" (a stratified subset)" if a.test_images else "")
    write_html(sensitivity_figure(m.table, 100 * m.unpruned, a.threshold,
                                  title=f"{a.source}: sensitivity to pruning one {a.by} at a time",
                                  caption=f"seed {a.seed}; {shown}; ranked by {a.method.criterion.__name__}; "
                                          f"no retraining; {command}"), html)
    tb, r = m.base, m.base.result
    write_json(a.out / "sensitivity.json", {
        "proposer": a.source, "method": a.method.name, "criterion": a.method.criterion.__name__, "by": a.by,
        "ratios": list(a.ratios), "seed": a.seed, "test_images": a.test_images, "data": a.data.describe(),
        "base": {"run": str(tb.run_dir), "epochs": r.epochs, "best_acc": r.best_acc, "final_acc": r.final_acc,
                 # what decides the base net: the method's own ratios play no part here
                 "settings": {k: v for k, v in tb.settings.record().items()
                              if k not in ("ratio", "layer_ratios", "count_rule")}},
        "unpruned_acc": m.unpruned, "points": len(m.table),
        "threshold": a.threshold, "max_ratio": a.max_ratio, "unit_ratios": d.unit_ratios,
        "pattern": {"name": a.pattern_name, "path": str(d.path), "ratio": d.pattern["ratio"],
                    "pruned_acc": d.pruned_acc},
        "command": command, "archsearch_version": __version__, "torch_version": torch.__version__,
        "device": r.device_name, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    files = [a.out / "sensitivity.csv", html, a.out / "sensitivity.json"]
    if png:
        render_png(html, html.with_suffix(".png"), width=1400, height=760)
        files.append(html.with_suffix(".png"))
    return files
