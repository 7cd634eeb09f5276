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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import read_toml
from .._shipped import installed_dir, repo_dir
from ..errors import ArchsearchError
from ..schemas import SweepFile, check
from ..config import PRESETS
from ..config import resolve as resolve_config
from .modes import get_mode, want


@dataclass
class SweepSpec:
    name: str
    target: str | None = None
    mode: str = "grid"
    title: str = ""
    about: str = ""
    cost: str = ""
    generators: list[str] = field(default_factory=lambda: ["uniform"])
    kinds: list[str] | None = None
    budgets: list[str] | None = None
    fractions: list[float] | None = None
    by: str = "params"
    latency: dict | None = None  # the latency measure's settings (None: the default measure)
    seeds: int = 1
    schedule: str = "scratch-e"
    patterns: dict = field(default_factory=dict)
    extract: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)
    rows: list[dict] | None = None   # table mode: one proposer and its settings per row
    arms: list[str] | None = None    # table mode: how each row's pruned net is trained
    scale: str | None = None
    path: str = ""
    # the settings of LEGACY_DEFAULTS that the file left out (filled from today's defaults): a
    # plan records them, so that a study begun under the old defaults is still recognised
    filled: list[str] = field(default_factory=list)

    # -- derived -----------------------------------------------------------------------------
    @property
    def study_name(self) -> str:
        return self.name + (f"-{self.scale}" if self.scale else "")

    def to_dict(self) -> dict:
        return {k: copy.deepcopy(getattr(self, k)) for k in (
            "name", "target", "mode", "title", "about", "cost", "generators", "kinds", "budgets", "fractions", "by",
            "latency", "seeds", "schedule", "patterns", "extract", "train", "search", "run", "rows", "arms", "scale")}

    @classmethod
    def from_dict(cls, d: dict, path: str = "") -> "SweepSpec":
        return cls(**d, path=path)

    @property
    def heartbeat(self) -> int:
        return int(self.run["heartbeat"])

    @property
    def grace(self) -> int:
        return int(self.run["grace"])

    @property
    def max_retry(self) -> int:
        return int(self.run["max_retry"])



# What plan versions 1 and 2 (archsearch before 2026-12-06) filled in where a spec left a
# setting out; since then [train] width and checkpoint_every are the preset's and [extract]'s
# preset is DEFAULT_PRESET (archsearch.config). Read by `parse_spec(legacy=True)` and by
# `plan.create_or_load`, and nowhere else.
LEGACY_DEFAULTS = {"train.width": 1.0, "train.checkpoint_every": 1, "extract.preset": "fast"}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def parse_spec(raw: Any, *, scale: str | None = None, path: str = "sweep spec", legacy: bool = False) -> SweepSpec:
    """Validate a spec's dict (as read from TOML) and apply `scale`'s overrides. Types,
    ranges and unknown keys are the schema's (`schemas.SweepFile`); the rules that tie
    fields together are checked here."""
    where = str(path)
    if not isinstance(raw, dict):
        raise ArchsearchError(f"{where} must be a table")
    scales = raw.get("scales", {})
    if not isinstance(scales, dict) or not all(isinstance(v, dict) for v in scales.values()):
        raise ArchsearchError(f"{where}: [scales] must hold tables like [scales.reduced]")
    d = {k: v for k, v in raw.items() if k != "scales"}
    if scale is not None:
        if scale not in scales:
            raise ArchsearchError(f"{where} has no scale {scale!r}; it has: {', '.join(scales) or 'none'}")
        if "name" in scales[scale]:
            raise ArchsearchError(f"{where} [scales.{scale}]: a scale cannot rename the sweep")
        d = _merge(d, scales[scale])
    else:  # a scale's overrides are checked too, so that --scale never meets a surprise later
        for sc, over in scales.items():
            check(SweepFile, _merge(d, over), f"{where} [scales.{sc}]")
    filled = [k for k in LEGACY_DEFAULTS if k.split(".")[1] not in (d.get(k.split(".")[0]) or {})]
    if legacy:  # a plan of version 1 or 2: what was left out meant what it meant then
        for k in filled:
            sec, key = k.split(".")
            d[sec] = {**(d.get(sec) if isinstance(d.get(sec), dict) else {}), key: LEGACY_DEFAULTS[k]}
        filled = []
    model = check(SweepFile, d, where)
    # every default filled in from the schema, and [train]'s width and checkpointing from its
    # preset (archsearch.config, as `archsearch train` resolves them): readers index, never guess
    fields = model.model_dump(by_alias=True)
    tr = fields["train"]
    want(tr["preset"] in PRESETS, where, f"train.preset must be one of {', '.join(PRESETS)}, got {tr['preset']!r}")
    cfg = resolve_config(tr["preset"], width=tr["width"], checkpoint_every=tr["checkpoint_every"])
    tr.update(width=cfg.width, checkpoint_every=cfg.checkpoint_every)
    spec = SweepSpec(**fields, scale=scale, path=str(path), filled=filled)
    _validate(spec, where)
    return spec


def _validate(s: SweepSpec, where: str) -> None:
    """The rules of the spec's mode (`modes.Mode.validate`)."""
    try:
        mode = get_mode(s.mode)
    except ArchsearchError as e:
        raise ArchsearchError(f"{where}: {e}") from None
    mode.validate(s, where)


def load_spec(path: str | os.PathLike, scale: str | None = None) -> SweepSpec:
    return parse_spec(read_toml(path, "sweep spec", 1 << 20), scale=scale, path=str(path))


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


__all__ = ["SweepSpec", "LEGACY_DEFAULTS", "parse_spec", "load_spec", "find_spec_file", "sweeps_dirs"]
