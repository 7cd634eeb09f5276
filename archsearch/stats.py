"""The statistics of every report, in one place (issue 29; DESIGN.md, "Statistics (v3)").

- A metric over seeds is its mean, its **sample** standard deviation (ddof=1: the unbiased
  variance's root, what a reader of "± std over n runs" assumes; numpy's default ddof=0 is
  1/sqrt(2) of it with two seeds) and n. One seed has no spread: its std is None, never 0.
- A comparison that a report calls a win (guided against uniform, scratch against
  fine-tuned) is **paired by seed**: both sides of seed s share what the seed fixed (the
  proposal a table row's arms start from, the data order), so the differences a_s - b_s
  vary less than the two arms do. Its mean, sample std, n and the 95% Student-t interval
  mean ± t(0.975, n-1) · sd / sqrt(n) say whether the difference is clear of zero.
- The headline accuracy is the final epoch's: the best epoch is the maximum of test accuracy
  over epochs, i.e. selected on the test set, so reports show it only as a column of its own.

No torch here: the reports, plots and tests import this alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as _scipy_stats

from .errors import ArchsearchError

DDOF = 1  # every std over seeds is the sample std
CONFIDENCE = 0.95  # the two-sided level of every interval a report shows
# the verdict words, each with what it means; `Paired.verdict` picks one
VERDICTS = {"beats": "the whole 95% CI lies above 0",
            "falls short of": "the whole 95% CI lies below 0",
            "matches": "no clear difference: the 95% CI spans 0"}
STD_NOTE = "mean ± sample std (ddof=1)"  # how every report and caption names its ±


def over_seeds(counts: Iterable[int]) -> str:
    """"over 3 seeds", or where rows differ "over 2-3 seeds (each row's: the seeds column)"."""
    ns = sorted(set(counts))
    if not ns:  # rows written without their count (a hand-made results table)
        return "over seeds (their count not recorded)"
    if len(ns) == 1:
        return f"over {ns[0]} seed" + ("s" if ns[0] != 1 else "")
    return f"over {ns[0]}-{ns[-1]} seeds (each row's: the seeds column)"


@dataclass(frozen=True)
class Spread:
    """A metric over seeds: mean, sample std (None with one seed) and n, shown rounded to 2
    places as "mean ± std" (one seed: "mean (1 seed)")."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread | None":
        a = np.asarray(list(values), dtype=float)
        if not len(a):
            return None
        return cls(float(a.mean()), float(a.std(ddof=DDOF)) if len(a) > 1 else None, len(a))

    def cells(self, name: str) -> dict[str, float | None]:
        return {f"{name}_mean": round(self.mean, 2), f"{name}_std": None if self.std is None else round(self.std, 2)}

    def text(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f}" if self.std is not None else f"{self.mean:.2f} (1 seed)"


def accuracy_cells(*, final: Sequence[float], best: Sequence[float]) -> dict[str, Any]:
    """One row's accuracy (%) over seeds in the reports' column order: the seed count, the
    final epoch (the headline), then the best epoch (selected on the test set: a column of
    its own). Keyword-only, so the two lists cannot be swapped unseen."""
    f, b = Spread.of(final), Spread.of(best)
    return {"seeds": f.n, **f.cells("final_acc"), **b.cells("best_acc"), "final_acc": f.text(),
            "best_acc": b.text()}


def final_acc(record: Mapping[str, Any], where: str) -> float:
    """The headline accuracy of one trial's record (its user attributes): the final epoch's.
    Sweeps have recorded it since they exist; a record without it (edited by hand, or from a
    tool that did not) is refused in one line rather than reported by another measure."""
    v = record.get("final_acc")
    if v is None:
        raise ArchsearchError(f"{where} records no final-epoch accuracy (final_acc): the reports' headline is the "
                              "final epoch, and the best epoch (selected on the test set) cannot stand in for it")
    return float(v)


@dataclass(frozen=True)
class Paired:
    """a - b over the seeds both have: the mean difference, its sample std and n, and the 95%
    Student-t interval (None with fewer than 2 seeds: one difference has no spread)."""

    seeds: tuple
    mean: float
    std: float | None
    n: int
    low: float | None
    high: float | None

    @property
    def verdict(self) -> str | None:
        """`VERDICTS`' word for the interval; None without one (a single seed judges nothing)."""
        if self.low is None:
            return None
        return "beats" if self.low > 0 else ("falls short of" if self.high < 0 else "matches")

    def numbers(self, prefix: str) -> dict[str, Any]:
        """The comparison's numbers as report columns named `prefix`_*, rounded to 2 places."""
        r = (lambda v: None if v is None else round(v, 2))
        return {f"{prefix}_diff": r(self.mean), f"{prefix}_diff_std": r(self.std), f"{prefix}_ci_low": r(self.low),
                f"{prefix}_ci_high": r(self.high), f"{prefix}_n": self.n, f"{prefix}_verdict": self.verdict or ""}

    def sentence(self, a: str, b: str, unit: str = "points") -> str:
        """"a beats b: +1.20 points, 95% CI [0.40, 2.00], n = 3 seeds", or, with one seed,
        the difference alone and why there is no verdict."""
        if self.verdict is None:
            return f"{a} against {b}: {self.mean:+.2f} {unit} on one seed (no interval, no verdict)"
        why = f" ({VERDICTS['matches']})" if self.verdict == "matches" else ""
        return (f"{a} {self.verdict} {b}: {self.mean:+.2f} {unit}, {round(100 * CONFIDENCE)}% CI "
                f"[{self.low:.2f}, {self.high:.2f}], n = {self.n} seeds{why}")


def t_half_width(sd: float, n: int) -> float:
    """Half the width of the two-sided `CONFIDENCE` Student-t interval of a mean of n values."""
    return float(_scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)


def paired(a: Mapping[Any, float], b: Mapping[Any, float]) -> Paired | None:
    """a - b paired by seed (`a` and `b` map seed -> value) over the seeds both have; None if
    they share none."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        return None
    d = np.asarray([a[s] - b[s] for s in seeds], dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return Paired(seeds, mean, None, 1, None, None)
    sd = float(d.std(ddof=DDOF))
    h = t_half_width(sd, len(d))
    return Paired(seeds, mean, sd, len(d), mean - h, mean + h)


__all__ = ["DDOF", "CONFIDENCE", "VERDICTS", "STD_NOTE", "over_seeds", "Spread", "accuracy_cells", "final_acc",
           "Paired", "paired", "t_half_width"]
