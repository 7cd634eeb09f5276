"""Budgets: bounds on the measures a network is paid for, and how they are written.

A budget bounds one or more measures (`MEASURES`):
- `params`: non-zero parameters (a sparse net counts its kept weights only),
- `macs`: multiply-accumulates per image, forward (`archsearch.counting`),
- `latency`: seconds per forward pass, measured (`archsearch.latency`; written in ms).

One bound binds: every generator builds the largest net under every bound and lands within
its tolerance (1%) of the one that binds (`archsearch.budget`). This module only reads and
writes budgets; it does not import torch.

How a list of budgets is written (`parse_budgets`):
- `0.5M,1M,2M`: one bound each, on the measure `--by` names (params by default); with
  `--by latency`, `1.5ms,3ms` (a bare number is milliseconds);
- `macs=20M,params=0.5M`: one budget with two bounds; several such budgets are separated
  by `;` (`macs=20M,params=0.5M;macs=40M,params=1M`).
Counts take K, M or G; a latency takes us, ms or s.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import asdict, dataclass

from .errors import ArchsearchError
from .limits import MAX_BUDGET, MAX_LATENCY_BATCH, MAX_REPEATS, MAX_THREADS

MEASURES = ("params", "macs", "latency")
BACKENDS = ("eager", "onnxruntime", "cuda")  # where a latency is measured (`archsearch.latency`)
MAX_LATENCY = 3600.0  # seconds: a forward pass slower than an hour is a typo, not a budget
_COUNT_UNITS = {"K": 1e3, "M": 1e6, "G": 1e9}
_TIME_UNITS = (("us", 1e-6), ("ms", 1e-3), ("s", 1.0))  # longest suffix first where they share one


def check_measure(by: str, what: str = "--by") -> str:
    if by not in MEASURES:
        raise ArchsearchError(f"{what} must be one of {', '.join(MEASURES)}, got {by!r}")
    return by


def parse_value(measure: str, text: str) -> float:
    """One bound's value: a count (0.5M, 150000) or, for latency, a time (1.5ms, 800us, 0.002s;
    a bare number is milliseconds). Latency is returned in seconds."""
    part = text.strip()
    try:
        if measure == "latency":
            unit = next(((s, f) for s, f in _TIME_UNITS if part.lower().endswith(s)), ("", 1e-3))
            v = float(part[:len(part) - len(unit[0])]) * unit[1]
        else:
            v = float(part[:-1]) * _COUNT_UNITS[part[-1].upper()] if part[-1:].upper() in _COUNT_UNITS else float(part)
    except (ValueError, KeyError, IndexError):
        like = "1.5ms, 800us or 0.002s" if measure == "latency" else "0.5M, 2M or 150000"
        raise ArchsearchError(f"{measure} budget {text!r} is not a number like {like}") from None
    top = MAX_LATENCY if measure == "latency" else MAX_BUDGET
    if not (math.isfinite(v) and 0 < v <= top):
        shown = f"{top:g} s" if measure == "latency" else f"{top:g}"
        raise ArchsearchError(f"{measure} budget {text!r} must be a positive finite number up to {shown}")
    return v


def fmt_value(measure: str, v: float) -> str:
    """A bound's value as written back: 500K, 1.2M; 1.5ms, 800us."""
    if measure == "latency":
        return f"{v * 1e6:.4g}us" if v < 1e-3 else f"{v * 1e3:.4g}ms" if v < 1 else f"{v:.4g}s"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= div:
            return f"{v / div:.4g}{unit}"
    return f"{v:.4g}"


@dataclass(frozen=True)
class Budget:
    """Bounds on one or more measures, in MEASURES order; latency in seconds."""

    bounds: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, **bounds: float) -> "Budget":
        for m, v in bounds.items():
            check_measure(m, "a budget's measure")
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ArchsearchError(f"{m} budget must be a positive finite number, got {v}")
        if not bounds:
            raise ArchsearchError("a budget needs at least one bound")
        return cls(tuple((m, float(bounds[m])) for m in MEASURES if m in bounds))

    @property
    def measures(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.bounds)

    def get(self, measure: str) -> float | None:
        return dict(self.bounds).get(measure)

    @property
    def single(self) -> tuple[str, float] | None:
        """(measure, value) for a budget of one bound, else None."""
        return self.bounds[0] if len(self.bounds) == 1 else None

    def text(self) -> str:
        """As written on a command line: 'macs=20M,params=500K' ('500K' for one params bound)."""
        if self.single and self.single[0] == "params":
            return fmt_value("params", self.single[1])
        return ",".join(f"{m}={fmt_value(m, v)}" for m, v in self.bounds)

    def describe(self) -> str:
        """In words: '500K params', '20M macs and 500K params', '1.5ms latency'."""
        return " and ".join(f"{fmt_value(m, v)} {m}" for m, v in self.bounds)

    def tag(self) -> str:
        """A file-name-safe label: '500K' (one params or MACs bound: the tags older runs use),
        'lat1.5ms', 'macs20M-params500K'."""
        if self.single and self.single[0] != "latency":
            return fmt_value(*self.single)
        return "-".join(("lat" if m == "latency" else m) + fmt_value(m, v) for m, v in self.bounds)

    def to_dict(self) -> dict:
        """{measure: value} (latency in seconds), as specs and reports record it."""
        return dict(self.bounds)

    def scaled(self, measure: str, factor: float) -> "Budget":
        """This budget with one bound multiplied by `factor` (the latency solver's correction)."""
        return Budget(tuple((m, v * factor if m == measure else v) for m, v in self.bounds))


@dataclass(frozen=True)
class LatencyMeasure:
    """How a latency is measured (`archsearch.latency`); the default is the DESIGN's: CPU, torch
    eager, eval mode, batch 1, 1 thread, median of 30 timed runs after 5 warm-up runs."""

    backend: str = "eager"
    threads: int = 1
    batch: int = 1
    warmup: int = 5
    repeats: int = 30

    def check(self) -> "LatencyMeasure":
        """One line when this measure cannot be taken here (an unknown or missing back end)."""
        if self.backend not in BACKENDS:
            raise ArchsearchError(f"latency back end must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not (1 <= self.threads <= MAX_THREADS and 1 <= self.batch <= MAX_LATENCY_BATCH
                and 1 <= self.repeats <= MAX_REPEATS and self.warmup >= 0):
            raise ArchsearchError(f"latency measure out of range: threads {self.threads}, batch {self.batch}")
        if self.backend == "onnxruntime":
            if importlib.util.find_spec("onnxruntime") is None:
                raise ArchsearchError("latency back end onnxruntime is not installed here "
                                      "(pip install onnxruntime), or use --latency-backend eager")
        if self.backend == "cuda":
            import torch
            if not torch.cuda.is_available():
                raise ArchsearchError("latency back end cuda needs a CUDA device; this machine has none")
        return self

    def describe(self) -> str:
        where = {"eager": "CPU, torch eager", "onnxruntime": "CPU, ONNX Runtime", "cuda": "CUDA, torch eager"}
        return (f"{where[self.backend]}, eval mode, batch {self.batch}, {self.threads} thread"
                f"{'s' if self.threads > 1 else ''}, median of {self.repeats} runs after {self.warmup} warm-up")

    def to_dict(self) -> dict:
        return {**asdict(self), "about": self.describe()}


def parse_budget(text: str, by: str = "params") -> Budget:
    """One budget: '0.5M' (a bound on `by`) or 'macs=20M,params=0.5M'."""
    check_measure(by)
    if "=" not in text:
        return Budget(((by, parse_value(by, text)),))
    bounds: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        measure, sep, value = (s.strip() for s in part.partition("="))
        if not sep:
            raise ArchsearchError(f"budget {text!r}: {part!r} is not MEASURE=VALUE (e.g. macs=20M,params=0.5M)")
        check_measure(measure, f"budget {text!r}: a measure")
        if measure in bounds:
            raise ArchsearchError(f"budget {text!r} bounds {measure} twice")
        bounds[measure] = parse_value(measure, value)
    return Budget.of(**bounds)


def parse_budgets(text: str, by: str = "params") -> list[Budget]:
    """A list of budgets as a command line or a sweep spec writes it (see the module's doc)."""
    check_measure(by)
    parts = [p for p in (p.strip() for p in text.split(";" if "=" in text else ",")) if p]
    if not parts:
        raise ArchsearchError("no budgets given")
    return [parse_budget(p, by) for p in parts]


__all__ = ["BACKENDS", "MEASURES", "Budget", "LatencyMeasure", "check_measure", "fmt_value", "parse_budget", "parse_budgets", "parse_value"]
