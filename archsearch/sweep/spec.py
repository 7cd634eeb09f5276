"""Sweep specs: the TOML files under `sweeps/` that name an experiment.

A spec says what to compare (target, patterns, generators, budgets, seeds, schedule),
how to train (preset, width, epochs, data) and at which scale. `[scales.NAME]` tables
hold overrides merged over the top level by `--scale NAME`, so one file describes both
the paper-scale experiment and its reduced version, each with its cost.

Grid mode enumerates (kind, generator, budget, seed); search mode lets TPE search
per-stage width multipliers at one budget, seeded with the pattern.
"""

from __future__ import annotations

import copy
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._shipped import installed_dir, repo_dir
from ..compare import parse_budgets
from ..errors import ArchsearchError
from ..generate import BY, GENERATORS
from ..names import parse_target
from ..train import PRESETS

MODES = ("grid", "search")
KINDS = ("channels", "sparsity")
SCHEDULES = ("scratch-e", "scratch-b")

_TOP = {"name", "title", "about", "cost", "mode", "target", "generators", "kinds", "budgets", "fractions", "by",
        "seeds", "schedule", "patterns", "extract", "train", "search", "run", "scales"}
_SECTIONS = {
    "patterns": {"own", "transferred"},
    "extract": {"preset", "seeds", "epochs", "width", "ratio", "sparsity", "floor", "in_sweep"},
    "train": {"preset", "epochs", "width", "data_dir", "download", "train_subset", "round", "floor", "device",
              "checkpoint_every", "cap", "count"},
    "search": {"budget", "fraction", "trials", "low", "high", "seed", "sampler_seed", "pruner", "startup_trials",
               "warmup_epochs", "uniform_reference"},
    "run": {"heartbeat", "grace", "max_retry"},
}


@dataclass
class SweepSpec:
    name: str
    target: str
    mode: str = "grid"
    title: str = ""
    about: str = ""
    cost: str = ""
    generators: list[str] = field(default_factory=lambda: ["uniform"])
    kinds: list[str] | None = None
    budgets: list[str] | None = None
    fractions: list[float] | None = None
    by: str = "params"
    seeds: int = 1
    schedule: str = "scratch-e"
    patterns: dict = field(default_factory=dict)
    extract: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    scale: str | None = None
    path: str = ""

    # -- derived -----------------------------------------------------------------------------
    @property
    def study_name(self) -> str:
        return self.name + (f"-{self.scale}" if self.scale else "")

    def to_dict(self) -> dict:
        return {k: copy.deepcopy(getattr(self, k)) for k in (
            "name", "target", "mode", "title", "about", "cost", "generators", "kinds", "budgets", "fractions", "by",
            "seeds", "schedule", "patterns", "extract", "train", "search", "run", "scale")}

    @classmethod
    def from_dict(cls, d: dict, path: str = "") -> "SweepSpec":
        return cls(**d, path=path)

    @property
    def heartbeat(self) -> int:
        return int(self.run.get("heartbeat", 10))

    @property
    def grace(self) -> int:
        return int(self.run.get("grace", 60))

    @property
    def max_retry(self) -> int:
        return int(self.run.get("max_retry", 2))

    def budget_values(self, full_cost: int) -> list[float]:
        """Absolute budgets: the listed ones, or fractions of the full target's cost."""
        if self.mode == "search":
            if "budget" in self.search:
                return parse_budgets(str(self.search["budget"]))[:1]
            return [float(self.search.get("fraction", 0.1)) * full_cost]
        if self.budgets:
            return parse_budgets(",".join(str(b) for b in self.budgets))
        return [f * full_cost for f in self.fractions]


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _check_keys(where: str, d: Any, known: set) -> None:
    if not isinstance(d, dict):
        raise ArchsearchError(f"{where} must be a table")
    extra = sorted(set(d) - known)
    if extra:
        raise ArchsearchError(f"{where}: unknown key(s) {', '.join(extra)}; known: {', '.join(sorted(known))}")


def parse_spec(raw: dict, *, scale: str | None = None, path: str = "sweep spec") -> SweepSpec:
    """Validate a spec's dict (as read from TOML) and apply `scale`'s overrides."""
    where = str(path)
    _check_keys(where, raw, _TOP)
    scales = raw.get("scales", {})
    _check_keys(f"{where} [scales]", scales, set(scales))
    d = {k: v for k, v in raw.items() if k != "scales"}
    if scale is not None:
        if scale not in scales:
            raise ArchsearchError(f"{where} has no scale {scale!r}; it has: {', '.join(scales) or 'none'}")
        _check_keys(f"{where} [scales.{scale}]", scales[scale], _TOP - {"scales", "name"})
        d = _merge(d, scales[scale])
    for sec, known in _SECTIONS.items():
        if sec in d:
            _check_keys(f"{where} [{sec}]", d[sec], known)
    if "name" not in d or not isinstance(d["name"], str) or not d["name"].replace("-", "").replace("_", "").isalnum():
        raise ArchsearchError(f"{where}: 'name' must be a word like fig3-vgg16-c10")
    if "target" not in d:
        raise ArchsearchError(f"{where}: 'target' is missing (e.g. target = \"vgg16-c10\")")
    try:
        spec = SweepSpec(**d, scale=scale, path=str(path))
    except TypeError as e:
        raise ArchsearchError(f"{where}: {e}") from None
    _validate(spec, where)
    return spec


def _want(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ArchsearchError(f"{where}: {msg}")


def _validate(s: SweepSpec, where: str) -> None:
    parse_target(s.target)
    _want(s.mode in MODES, where, f"mode must be one of {', '.join(MODES)}, got {s.mode!r}")
    _want(s.by in BY, where, f"by must be one of {', '.join(BY)}, got {s.by!r}")
    _want(s.schedule in SCHEDULES, where, f"schedule must be one of {', '.join(SCHEDULES)}, got {s.schedule!r}")
    _want(isinstance(s.seeds, int) and s.seeds >= 1, where, f"seeds must be a positive integer, got {s.seeds!r}")
    _want(isinstance(s.generators, list) and s.generators and all(g in GENERATORS for g in s.generators), where,
          f"generators must be a list drawn from {', '.join(GENERATORS)}, got {s.generators!r}")
    _want(len(set(s.generators)) == len(s.generators), where, "generators are listed twice")
    if s.kinds is not None:
        _want(isinstance(s.kinds, list) and s.kinds and all(k in KINDS for k in s.kinds), where,
              f"kinds must be a list drawn from {', '.join(KINDS)}, got {s.kinds!r}")
    for key in ("own", "transferred"):
        v = s.patterns.get(key, [])
        _want(isinstance(v, list) and all(isinstance(x, str) and x for x in v), where,
              f"patterns.{key} must be a list of pattern names, files or proposer specs")
    tr = s.train
    preset = tr.get("preset", "paper")
    _want(preset in PRESETS, where, f"train.preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    _want(isinstance(tr.get("download", True), bool), where, "train.download must be true or false")
    _want(s.extract.get("preset", "fast") in PRESETS, where, f"extract.preset must be one of {', '.join(PRESETS)}")
    for sec, key, typ in (("train", "epochs", int), ("train", "train_subset", int), ("train", "round", int),
                          ("extract", "seeds", int), ("extract", "epochs", int), ("train", "checkpoint_every", int),
                          ("run", "heartbeat", int), ("run", "grace", int), ("run", "max_retry", int),
                          ("search", "trials", int), ("search", "startup_trials", int),
                          ("search", "warmup_epochs", int)):
        v = getattr(s, sec).get(key)
        _want(v is None or (isinstance(v, typ) and not isinstance(v, bool) and v >= (0 if key in (
            "max_retry", "startup_trials", "warmup_epochs") else 1)), where,
              f"{sec}.{key} must be a positive integer, got {v!r}")
    for sec, key in (("train", "width"), ("extract", "width")):
        v = getattr(s, sec).get(key)
        _want(v is None or (isinstance(v, (int, float)) and v > 0), where, f"{sec}.{key} must be positive")
    _want(s.grace > s.heartbeat, where, f"run.grace ({s.grace}s) must exceed run.heartbeat ({s.heartbeat}s)")
    if s.mode == "grid":
        _want((s.budgets is None) != (s.fractions is None), where, "give exactly one of budgets or fractions")
        if s.budgets is not None:
            _want(isinstance(s.budgets, list) and s.budgets, where, "budgets must be a non-empty list like [\"0.5M\", \"1M\"]")
            parse_budgets(",".join(str(b) for b in s.budgets))
        else:
            _want(isinstance(s.fractions, list) and s.fractions and all(
                isinstance(f, (int, float)) and 0 < f <= 1 for f in s.fractions), where,
                  "fractions must be a non-empty list of numbers in (0, 1]")
        needs_own = {"pruned", "guided"} & set(s.generators)
        _want(not needs_own or s.patterns.get("own"), where,
              f"generator(s) {', '.join(sorted(needs_own))} need patterns.own (a pattern proposed on {s.target})")
        _want("transferred" not in s.generators or s.patterns.get("transferred"), where,
              "the transferred generator needs patterns.transferred")
        _want(s.kinds is not None or s.patterns.get("own") or s.patterns.get("transferred"), where,
              "with no patterns, say which kinds to generate (kinds = [\"channels\"])")
    else:
        se = s.search
        _want(s.patterns.get("own") or s.patterns.get("transferred"), where,
              "search mode starts from a pattern: set patterns.own (or patterns.transferred)")
        _want(("budget" in se) != ("fraction" in se), where, "search needs exactly one of search.budget or search.fraction")
        if "fraction" in se:
            _want(isinstance(se["fraction"], (int, float)) and 0 < se["fraction"] <= 1, where,
                  "search.fraction must be in (0, 1]")
        else:
            parse_budgets(str(se["budget"]))
        lo, hi = se.get("low", 0.05), se.get("high", 1.0)
        _want(isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo < hi, where,
              "search.low and search.high must satisfy 0 < low < high")
        _want(se.get("pruner", "median") in ("median", "none"), where, "search.pruner must be median or none")


def load_spec(path: str | os.PathLike, scale: str | None = None) -> SweepSpec:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except OSError as e:
        raise ArchsearchError(f"cannot read sweep spec {p}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ArchsearchError(f"{p} is not valid TOML: {e}") from None
    return parse_spec(raw, scale=scale, path=str(p))


def sweeps_dirs() -> list[Path]:
    """Where shipped sweep specs live: the repository's `sweeps/`, then the installed copy."""
    return [d for d in (repo_dir("sweeps"), installed_dir("sweeps")) if d is not None]


def find_spec_file(name: str) -> Path:
    """A spec path, or the name of a shipped spec (`quickstart`, `fig3-vgg16-c10`)."""
    p = Path(name)
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    for d in sweeps_dirs():
        if (d / f"{stem}.toml").is_file():
            return d / f"{stem}.toml"
    known = sorted({f.stem for d in sweeps_dirs() for f in d.glob("*.toml")})
    raise ArchsearchError(f"no sweep spec {name!r} (not a file, and not a shipped spec: {', '.join(known) or 'none'})")


__all__ = ["SweepSpec", "parse_spec", "load_spec", "find_spec_file", "sweeps_dirs", "KINDS", "MODES"]
