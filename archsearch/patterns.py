"""Patterns: what the proposals of one proposer spec say about architecture, over seeds.

A pattern file is versioned JSON, validated on load, written atomically:

- per layer: kept channel ratio (channels) or density (sparsity), mean and sample std (ddof=1)
  over seeds;
- per stage: the mean channel ratio as the paper defines it (mean kept channels over the
  stage's layers divided by the original width, Liu et al. 2019 Sec. 5), or for sparse
  proposals the stage density (kept / total conv weights in the stage) and the 3x3
  kernel-position keep probability (the paper's Figure 4);
- base and pruned accuracy, the per-seed raw proposals, and full provenance.

The library is a search path: $ARCHSEARCH_PATTERNS (os.pathsep-separated), the user
library (~/.local/share/archsearch/patterns, where `extract` writes by default), the
repository's `patterns/` (in a source checkout), then the copy installed with the
package (share/archsearch/patterns under the install prefix).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from . import __version__
from ._io import check_name, is_regular_file, read_json, write_json
from ._shipped import installed_dir, repo_dir
from .archs import get_family
from .errors import ArchsearchError
from .names import split_proposer
from .propose import PROPOSERS, parse
from .schemas import LastPattern, Pattern, check
from .spec import ArchSpec
from .stats import DDOF

PATTERN_SCHEMA = 2  # 2 names its layers (channel groups or convs) and kernel sizes; 1 (VGG) is still read


# -- extraction ------------------------------------------------------------------------------
def _seed_std(a: np.ndarray) -> np.ndarray:
    """The sample std (ddof=1, as every report's ±: `archsearch.stats`) over seeds, axis 0. One
    seed has no spread to measure; the file stores 0 there (its schema holds numbers), and its
    provenance's seeds say there was one."""
    return a.std(0, ddof=DDOF) if len(a) > 1 else np.zeros(a.shape[1:])


def _mean_std(rows: Iterable[Iterable[float]]) -> tuple[list[float], list[float]]:
    a = np.asarray(list(rows), dtype=float)
    return [round(float(v), 6) for v in a.mean(0)], [round(float(v), 6) for v in _seed_std(a)]


def stage_channel_ratios(widths: list[int], base_widths: list[int], stages: list[int]) -> list[float]:
    """Per stage: mean kept channels over the stage's layers / mean original width."""
    n = max(stages) + 1
    return [float(np.mean([w for w, s in zip(widths, stages) if s == k]) /
                  np.mean([b for b, s in zip(base_widths, stages) if s == k])) for k in range(n)]


def stage_sparsity(masks: list[np.ndarray], stages: list[int]) -> tuple[list[float], list[list[list[float]] | None]]:
    """Per stage: density (kept / all conv weights) and the 3x3 kernel-position keep map over
    the stage's 3x3 convs (None for a stage with none: 1x1 convs have densities alone)."""
    n = max(stages) + 1
    dens, maps = [], []
    for k in range(n):
        ms = [np.asarray(m, dtype=bool) for m, s in zip(masks, stages) if s == k]
        kept = sum(int(m.sum()) for m in ms)
        total = sum(m.size for m in ms)
        dens.append(kept / total)
        # every (out, in) kernel of the stage's 3x3 convs counts once, whatever its layer
        k3 = [m.reshape(-1, 3, 3) for m in ms if m.shape[-2:] == (3, 3)]
        maps.append(np.concatenate(k3).mean(axis=0).tolist() if k3 else None)
    return dens, maps


def _overall_ratio(settings: dict) -> float:
    """The share a proposal prunes: its ratio, or for an iterative one (`rounds` of `ratio`
    each) the compound 1 - (1 - ratio)^rounds."""
    r = settings["ratio"]
    return r if settings.get("rounds") is None else round(1 - (1 - r) ** settings["rounds"], 6)


@dataclass(frozen=True)
class _Layout:
    """What a pattern has one entry per: channel groups, removable blocks or convs."""

    names: list[str]
    stages: list[int]
    base_widths: list[int]
    kernels: list[int] | None = None


def _layout(kind: str, base: ArchSpec) -> _Layout:
    fam = get_family(base.family)
    if kind == "channels":
        return _Layout([g.name for g in fam.groups(base)], base.stages, base.widths)
    if kind == "depth":
        blocks = [b for b in fam.block_layout(base.depth) if b.removable]
        return _Layout([b.name for b in blocks], [b.stage for b in blocks], [1] * len(blocks))
    convs = fam.convs(base)
    return _Layout([c.name for c in convs], [c.stage for c in convs], [c.cout for c in convs], [c.k for c in convs])


def _depth_facts(p, lay: _Layout) -> dict[str, Any]:
    fam = get_family(p.base_spec.family)
    kept = dict(zip((b.name for b in fam.block_layout(p.base_spec.depth)), fam.kept_blocks(p.spec)))
    ratio = [1.0 if kept[n] else 0.0 for n in lay.names]
    stage = [float(np.mean([r for r, st in zip(ratio, lay.stages) if st == k])) for k in range(max(lay.stages) + 1)]
    return {"layer_ratio": ratio, "stage_ratio": stage, "threshold": p.info.get("threshold"),
            "scales": p.info.get("scales")}


def _channel_facts(p, lay: _Layout) -> dict[str, Any]:
    return {"widths": p.spec.widths, "layer_ratio": [w / b for w, b in zip(p.spec.widths, lay.base_widths)],
            "stage_ratio": stage_channel_ratios(p.spec.widths, lay.base_widths, lay.stages),
            "threshold": p.info.get("threshold"), "clamped": p.info.get("clamped", [])}


def _sparsity_facts(p, lay: _Layout) -> dict[str, Any]:
    masks = [p.spec.masks[n] for n in lay.names]
    density, kernel_keep = stage_sparsity(masks, lay.stages)
    return {"layer_density": [float(m.mean()) for m in masks], "stage_density": density,
            "stage_kernel_keep": kernel_keep, "layer_kernel_keep": p.info.get("kernel_keep"),
            "threshold": p.info.get("threshold")}


_FACTS = {"depth": _depth_facts, "channels": _channel_facts, "sparsity": _sparsity_facts}


def _seed_record(p, kind: str, lay: _Layout) -> dict[str, Any]:
    """One proposal's entry in the pattern: its accuracies and what it kept."""
    return {"seed": p.seed, "base_acc": p.base_acc, "base_final_acc": p.base_final_acc, "pruned_acc": p.pruned_acc,
            "run": p.run_dir, **_FACTS[kind](p, lay)}


def _kernel_keep_summary(per_seed: list[dict]) -> tuple[list, list]:
    """Mean and std over seeds of each stage's 3x3 keep map (None for a stage of 1x1 convs)."""
    mean, std = [], []
    for k, first in enumerate(per_seed[0]["stage_kernel_keep"]):
        if first is None:
            mean.append(None), std.append(None)
            continue
        maps = np.asarray([r["stage_kernel_keep"][k] for r in per_seed], dtype=float)  # seeds x 3 x 3
        mean.append(np.round(maps.mean(0), 6).tolist()), std.append(np.round(_seed_std(maps), 6).tolist())
    return mean, std


def summaries(kind: str, per_seed: list[dict]) -> dict[str, Any]:
    """The pattern's per-layer and per-stage means and sample stds over seeds (`extract`, and
    benchmarks/restat_patterns.py on a committed pattern's per-seed records)."""
    if kind in ("channels", "depth"):
        return {"layers": dict(zip(("ratio_mean", "ratio_std"), _mean_std(r["layer_ratio"] for r in per_seed))),
                "stage": dict(zip(("ratio_mean", "ratio_std"), _mean_std(r["stage_ratio"] for r in per_seed)))}
    stage = dict(zip(("density_mean", "density_std"), _mean_std(r["stage_density"] for r in per_seed)))
    stage["kernel_keep_mean"], stage["kernel_keep_std"] = _kernel_keep_summary(per_seed)
    return {"layers": dict(zip(("density_mean", "density_std"), _mean_std(r["layer_density"] for r in per_seed))),
            "stage": stage}


def accuracy_line(pat: dict) -> str:
    """The pattern's accuracies in words, for `extract` and `patterns show`."""
    acc = pat["accuracy"]
    if not (acc.get("base") and acc.get("pruned")):
        return "accuracy not tested (scored at initialisation: the untrained nets are at chance)"
    return (f"base {100 * acc['base']['mean']:.2f} ± {100 * acc['base']['std']:.2f}%, pruned (no fine-tune) "
            f"{100 * acc['pruned']['mean']:.2f} ± {100 * acc['pruned']['std']:.2f}%")


def accuracy_summary(per_seed: list[dict]) -> dict[str, dict[str, float]]:
    """The base, base-final and pruned accuracies, mean and sample std over seeds; an accuracy
    a seed did not test (a proposal scored at initialisation) is left out."""
    return {k: {"mean": round(float(np.mean(v)), 6), "std": round(float(_seed_std(np.asarray(v, dtype=float))), 6)}
            for k, v in (("base", [r["base_acc"] for r in per_seed]),
                         ("base_final", [r["base_final_acc"] for r in per_seed]),
                         ("pruned", [r["pruned_acc"] for r in per_seed])) if all(x is not None for x in v)}


def _scale(s: dict) -> str:
    """Paper scale, or what made it a reduced one."""
    if s["preset"] == "paper" and s["width"] == 1.0 and not s.get("train_subset"):
        return "paper scale"
    return (f"reduced scale: width {s['width']:g}, {s['schedule']['epochs']} epochs ({s['preset']} preset)"
            + (f", {s['train_subset']} training images" if s.get("train_subset") else ""))


def _provenance(proposals: list, pat: dict, command: str) -> dict[str, Any]:
    first, s = proposals[0], proposals[0].settings
    sched = s["schedule"]
    prov = {"proposer": first.proposer, "method": first.method, "arch": pat["arch"], "data": pat["data"],
            "ratio": _overall_ratio(s), "seeds": [p.seed for p in proposals], "preset": s["preset"],
            "width": s["width"], "epochs": sched["epochs"], "batch_size": sched["batch_size"], "lr": sched["lr"],
            "sparsity_s": s["sparsity"], "floor": s["floor"], "base_accuracy": (pat["accuracy"].get("base") or {}).get("mean"),
            "devices": sorted({p.device for p in proposals}), "torch_version": first.torch_version,
            "archsearch_version": __version__, "command": command, "date": max(p.date for p in proposals),
            "scale": _scale(s) if first.base_epochs else _untrained_scale(s, first.info)}
    optional = {"train_subset": s.get("train_subset") or None, "variant": split_proposer(first.proposer)[2] or None,
                "layer_ratios": s.get("layer_ratios"), "rounds": s.get("rounds"),
                "ratio_per_round": s["ratio"] if s.get("rounds") is not None else None,
                "rewind_epoch": s.get("rewind_epoch"),
                # a proposer at initialisation trains nothing: `epochs` is its preset's, which the
                # arms of a table train; what it read to score is this
                "trained_epochs": 0 if not first.base_epochs else None,
                "scored_images": first.info.get("images") if not first.base_epochs else None,
                "scored_batches": first.info.get("batches") if not first.base_epochs else None}
    return {**prov, **{k: v for k, v in optional.items() if v is not None}}


def _untrained_scale(s: dict, info: dict) -> str:
    """What a pattern scored at initialisation cost: no training, the images it read."""
    return (f"scored at initialisation, no training: width {s['width']:g}, {info.get('images', '?')} images in "
            f"{info.get('batches', '?')} batch(es)")


def extract(proposals: list, *, name: str | None = None, command: str = "") -> dict:
    """Summarise the proposals (one per seed) of one proposer spec into a pattern dict."""
    if not proposals:
        raise ArchsearchError("no proposals to extract a pattern from")
    first = proposals[0]
    if len({p.proposer for p in proposals}) != 1 or len({json.dumps(p.settings, sort_keys=True) for p in proposals}) != 1:
        raise ArchsearchError("proposals of different specs or settings cannot form one pattern")
    base, kind = first.base_spec, first.kind
    lay = _layout(kind, base)
    per_seed = [_seed_record(p, kind, lay) for p in proposals]
    pat: dict[str, Any] = {
        "schema": PATTERN_SCHEMA, "name": name or first.proposer, "kind": kind, "method": first.method,
        "arch": base.name, "family": base.family, "depth": base.depth, "data": split_proposer(first.proposer)[1].data,
        "ratio": _overall_ratio(first.settings), "width": base.width, "layer_names": lay.names, "stages": lay.stages,
        "base_widths": lay.base_widths,
    }
    if lay.kernels is not None:
        pat["kernels"] = lay.kernels
    pat.update(summaries(kind, per_seed))
    pat["accuracy"] = accuracy_summary(per_seed)
    pat["provenance"] = _provenance(proposals, pat, command)
    pat["proposals"] = per_seed
    validate(pat)
    return pat


# -- validation --------------------------------------------------------------------------------
PATTERN_LIMIT = 16 << 20  # bytes; the shipped patterns are a few KB


def validate(d: Any, where: str = "pattern") -> dict:
    """Check a pattern dict against its schema (`schemas.Pattern`); return it, or raise one line."""
    check(Pattern, d, where)
    return d


def load_pattern(path: str | os.PathLike) -> dict:
    return validate(read_json(path, "pattern", PATTERN_LIMIT), str(path))


def save_pattern(pat: dict, path: str | os.PathLike) -> Path:
    validate(pat)
    check_name(Path(path).stem, "pattern name")
    write_json(path, pat)
    return Path(path)


# -- the library -------------------------------------------------------------------------------
def user_library() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "archsearch" / "patterns"


def repo_library() -> Path | None:
    return repo_dir("patterns")


def installed_library() -> Path | None:
    return installed_dir("patterns")


@dataclass(frozen=True)
class LibraryDir:
    path: Path
    origin: str  # env | user | repo | installed


def search_path() -> list[LibraryDir]:
    dirs: list[LibraryDir] = []
    for p in filter(None, os.environ.get("ARCHSEARCH_PATTERNS", "").split(os.pathsep)):
        dirs.append(LibraryDir(Path(p), "$ARCHSEARCH_PATTERNS"))
    dirs.append(LibraryDir(user_library(), "user"))
    if (r := repo_library()) is not None:
        dirs.append(LibraryDir(r, "repo"))
    if (i := installed_library()) is not None:
        dirs.append(LibraryDir(i, "installed"))
    seen, out = set(), []
    for d in dirs:
        key = d.path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def default_write_dir() -> Path:
    env = [p for p in os.environ.get("ARCHSEARCH_PATTERNS", "").split(os.pathsep) if p]
    return Path(env[0]) if env else user_library()


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    origin: str


def entries() -> list[Entry]:
    """Every pattern file on the search path; a name found twice is taken from the first dir.
    Only regular files count (a FIFO or a link to a device named x.json is passed over)."""
    found: dict[str, Entry] = {}
    for d in search_path():
        try:
            files = sorted(d.path.glob("*.json")) if d.path.is_dir() else []
        except OSError:
            files = []  # an unreadable folder on the path holds no patterns we can use
        for f in files:
            if is_regular_file(f):
                found.setdefault(f.stem, Entry(f.stem, f, d.origin))
    return sorted(found.values(), key=lambda e: e.name)


def find(name: str) -> Entry:
    """The library entry `name` (or a path to a pattern file)."""
    p = Path(name)
    if p.suffix == ".json" and p.is_file():
        return Entry(p.stem, p, "file")
    for e in entries():
        if e.name == name:
            return e
    known = ", ".join(e.name for e in entries()) or "none"
    try:
        parse(name)
    except ArchsearchError as e:  # why it is no proposer spec: a bad method, data set, or network (tv.REFUSED)
        raise ArchsearchError(f"unknown pattern {name!r}: it is not in the library (which has: {known}) "
                              f"and not a proposer spec (METHOD-ARCH-DATA, methods: {', '.join(PROPOSERS)}): {e}") from None
    raise ArchsearchError(f"{name!r} is a proposer spec, not a library entry yet; create it with "
                          f"`archsearch extract --from {name}` (library has: {known})")


def last_pattern_file() -> Path:
    """Where `extract` notes the pattern it wrote last (`transfer`'s default --from)."""
    return default_write_dir() / ".last-pattern"


def record_last(path: Path) -> None:
    write_json(last_pattern_file(), {"path": str(Path(path).resolve())})


def last_pattern() -> Path | None:
    """The pattern file `extract` wrote last, if that note is readable and the file is still there."""
    note = last_pattern_file()
    if not note.exists():
        return None
    try:
        path = Path(check(LastPattern, read_json(note, "note", 1 << 16), str(note)).path)
    except ArchsearchError:
        return None  # a damaged note only loses the default
    return path if is_regular_file(path) else None
