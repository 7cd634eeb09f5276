"""Patterns: what the proposals of one proposer spec say about architecture, over seeds.

A pattern file is versioned JSON, validated on load, written atomically:

- per layer: kept channel ratio (channels) or density (sparsity), mean and std over seeds;
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

from ._io import write_json
from ._shipped import installed_dir, repo_dir
from .errors import ArchsearchError

PATTERN_SCHEMA = 1
KINDS = ("channels", "sparsity")


# -- extraction ------------------------------------------------------------------------------
def _mean_std(rows: Iterable[Iterable[float]]) -> tuple[list[float], list[float]]:
    a = np.asarray(list(rows), dtype=float)
    # std over seeds, population (ddof=0) so a single seed gives 0 rather than NaN
    return [round(float(v), 6) for v in a.mean(0)], [round(float(v), 6) for v in a.std(0)]


def stage_channel_ratios(widths: list[int], base_widths: list[int], stages: list[int]) -> list[float]:
    """Per stage: mean kept channels over the stage's layers / mean original width."""
    n = max(stages) + 1
    return [float(np.mean([w for w, s in zip(widths, stages) if s == k]) /
                  np.mean([b for b, s in zip(base_widths, stages) if s == k])) for k in range(n)]


def stage_sparsity(masks: list[np.ndarray], stages: list[int]) -> tuple[list[float], list[list[list[float]]]]:
    """Per stage: density (kept / all conv weights) and the kernel-position keep map."""
    n = max(stages) + 1
    dens, maps = [], []
    for k in range(n):
        ms = [np.asarray(m, dtype=bool) for m, s in zip(masks, stages) if s == k]
        kept = sum(int(m.sum()) for m in ms)
        total = sum(m.size for m in ms)
        dens.append(kept / total)
        # every (out, in) kernel of the stage counts once, whatever its layer
        kernels = np.concatenate([m.reshape(-1, *m.shape[-2:]) for m in ms])
        maps.append(kernels.mean(axis=0).tolist())
    return dens, maps


def extract(proposals: list, *, name: str | None = None, command: str = "") -> dict:
    """Summarise the proposals (one per seed) of one proposer spec into a pattern dict."""
    from . import __version__

    if not proposals:
        raise ArchsearchError("no proposals to extract a pattern from")
    first = proposals[0]
    if len({p.proposer for p in proposals}) != 1 or len({json.dumps(p.settings, sort_keys=True) for p in proposals}) != 1:
        raise ArchsearchError("proposals of different specs or settings cannot form one pattern")
    base = first.base_spec
    stages, base_widths = base.stages, base.widths
    kind = first.kind
    per_seed: list[dict[str, Any]] = []
    for p in proposals:
        rec: dict[str, Any] = {"seed": p.seed, "base_acc": p.base_acc, "base_final_acc": p.base_final_acc,
                               "pruned_acc": p.pruned_acc, "run": p.run_dir}
        if kind == "channels":
            rec["widths"] = p.spec.widths
            rec["layer_ratio"] = [w / b for w, b in zip(p.spec.widths, base_widths)]
            rec["stage_ratio"] = stage_channel_ratios(p.spec.widths, base_widths, stages)
            rec["threshold"] = p.info.get("threshold")
            rec["clamped"] = p.info.get("clamped", [])
        else:
            masks = p.spec.masks
            rec["layer_density"] = [float(m.mean()) for m in masks]
            rec["stage_density"], rec["stage_kernel_keep"] = stage_sparsity(masks, stages)
            rec["layer_kernel_keep"] = p.info.get("kernel_keep")
            rec["threshold"] = p.info.get("threshold")
        per_seed.append(rec)
    s = first.settings
    pat: dict[str, Any] = {
        "schema": PATTERN_SCHEMA,
        "name": name or first.proposer,
        "kind": kind,
        "method": first.method,
        "arch": base.name,
        "family": base.family,
        "depth": base.depth,
        "data": first.proposer.rsplit("-", 1)[1],
        "ratio": s["ratio"],
        "stages": stages,
        "base_widths": base_widths,
    }
    if kind == "channels":
        pat["layers"] = dict(zip(("ratio_mean", "ratio_std"), _mean_std(r["layer_ratio"] for r in per_seed)))
        pat["stage"] = dict(zip(("ratio_mean", "ratio_std"), _mean_std(r["stage_ratio"] for r in per_seed)))
    else:
        pat["layers"] = dict(zip(("density_mean", "density_std"), _mean_std(r["layer_density"] for r in per_seed)))
        pat["stage"] = dict(zip(("density_mean", "density_std"), _mean_std(r["stage_density"] for r in per_seed)))
        maps = np.asarray([r["stage_kernel_keep"] for r in per_seed], dtype=float)  # seeds x stages x k x k
        pat["stage"]["kernel_keep_mean"] = np.round(maps.mean(0), 6).tolist()
        pat["stage"]["kernel_keep_std"] = np.round(maps.std(0), 6).tolist()
    pat["accuracy"] = {
        k: dict(zip(("mean", "std"), (round(float(np.mean(v)), 6), round(float(np.std(v)), 6))))
        for k, v in (("base", [r["base_acc"] for r in per_seed]), ("base_final", [r["base_final_acc"] for r in per_seed]),
                     ("pruned", [r["pruned_acc"] for r in per_seed]))
    }
    sched = s["schedule"]
    pat["provenance"] = {
        "proposer": first.proposer, "method": first.method, "arch": base.name, "data": pat["data"],
        "ratio": s["ratio"], "seeds": [p.seed for p in proposals], "preset": s["preset"], "width": s["width"],
        "epochs": sched["epochs"], "batch_size": sched["batch_size"], "lr": sched["lr"],
        "sparsity_s": s["sparsity"], "floor": s["floor"],
        "base_accuracy": pat["accuracy"]["base"]["mean"],
        "devices": sorted({p.device for p in proposals}), "torch_version": first.torch_version,
        "archsearch_version": __version__, "command": command,
        "date": max(p.date for p in proposals),
        "scale": ("paper scale" if (s["preset"] == "paper" and s["width"] == 1.0)
                  else f"reduced scale: width {s['width']:g}, {sched['epochs']} epochs ({s['preset']} preset)"),
    }
    pat["proposals"] = per_seed
    validate(pat)
    return pat


# -- validation --------------------------------------------------------------------------------
def _fail(where: str, msg: str) -> ArchsearchError:
    return ArchsearchError(f"{where}: {msg}")


def validate(d: Any, where: str = "pattern") -> dict:
    """Check a pattern dict; return it, or raise ArchsearchError with one clear line."""
    if not isinstance(d, dict):
        raise _fail(where, "a pattern must be a JSON object")
    schema = d.get("schema")
    if schema != PATTERN_SCHEMA:
        raise _fail(where, f"pattern schema {schema!r} is not supported (this archsearch reads schema {PATTERN_SCHEMA})")
    for key, typ in (("name", str), ("kind", str), ("method", str), ("arch", str), ("family", str), ("depth", int),
                     ("data", str), ("ratio", (int, float)), ("stages", list), ("base_widths", list),
                     ("layers", dict), ("stage", dict), ("accuracy", dict), ("provenance", dict)):
        if key not in d:
            raise _fail(where, f"missing field {key!r}")
        if not isinstance(d[key], typ) or isinstance(d[key], bool):
            raise _fail(where, f"field {key!r} has the wrong type ({type(d[key]).__name__})")
    if d["kind"] not in KINDS:
        raise _fail(where, f"kind must be one of {', '.join(KINDS)}, got {d['kind']!r}")
    n = len(d["stages"])
    if n == 0 or len(d["base_widths"]) != n:
        raise _fail(where, f"{n} stage labels but {len(d['base_widths'])} base widths")
    n_stages = max(d["stages"]) + 1
    what = "ratio" if d["kind"] == "channels" else "density"
    for group, length in (("layers", n), ("stage", n_stages)):
        for stat in ("mean", "std"):
            v = d[group].get(f"{what}_{stat}")
            if not isinstance(v, list) or len(v) != length:
                raise _fail(where, f"{group}.{what}_{stat} must be a list of {length} numbers")
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in v):
                raise _fail(where, f"{group}.{what}_{stat} holds a non-number")
            if stat == "mean" and not all(0 <= x <= 1 for x in v):
                raise _fail(where, f"{group}.{what}_mean must lie in [0, 1]")
    if d["kind"] == "sparsity":
        km = d["stage"].get("kernel_keep_mean")
        if not isinstance(km, list) or len(km) != n_stages or not all(
                isinstance(m, list) and len(m) == 3 and all(isinstance(r, list) and len(r) == 3 for r in m) for m in km):
            raise _fail(where, f"stage.kernel_keep_mean must be {n_stages} 3x3 maps")
    prov = d["provenance"]
    for key in ("method", "arch", "data", "ratio", "seeds", "epochs", "width", "archsearch_version", "command"):
        if key not in prov:
            raise _fail(where, f"provenance lacks {key!r}")
    return d


def load_pattern(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ArchsearchError(f"cannot read pattern {path}: {e.strerror}") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ArchsearchError(f"{path}: not valid JSON ({e})") from None
    return validate(d, str(path))


def save_pattern(pat: dict, path: str | os.PathLike) -> Path:
    validate(pat)
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
    """Every pattern file on the search path; a name found twice is taken from the first dir."""
    found: dict[str, Entry] = {}
    for d in search_path():
        if d.path.is_dir():
            for f in sorted(d.path.glob("*.json")):
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
    from .propose import PROPOSERS, parse

    known = ", ".join(e.name for e in entries()) or "none"
    try:
        parse(name)
    except ArchsearchError:
        raise ArchsearchError(f"unknown pattern {name!r}: it is not in the library (which has: {known}) "
                              f"and not a proposer spec (METHOD-ARCH-DATA, methods: {', '.join(PROPOSERS)})") from None
    raise ArchsearchError(f"{name!r} is a proposer spec, not a library entry yet; create it with "
                          f"`archsearch extract --from {name}` (library has: {known})")


def last_pattern_file() -> Path:
    """Where `extract` notes the pattern it wrote last (`transfer`'s default --from)."""
    return default_write_dir() / ".last-pattern"


def record_last(path: Path) -> None:
    write_json(last_pattern_file(), {"path": str(Path(path).resolve())})
