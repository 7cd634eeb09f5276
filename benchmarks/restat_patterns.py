"""Recompute the std fields of the committed patterns from their per-seed proposals, in place.

    python benchmarks/restat_patterns.py [--check] [NAME ...]

The shipped patterns (patterns/*.json) were written when `archsearch.patterns` took the
population std over seeds; it now takes the sample std (ddof=1, issue 29). Each file keeps
its raw per-seed proposals (`proposals`: every seed's layer and stage ratios or densities,
kernel keep maps and accuracies), so the stds can be recomputed without training: this runs
the extractor's own summaries (`patterns.summaries`, `patterns.accuracy_summary`) on those records,
so the rule has one home. Only std fields are replaced; each recomputed mean must equal the
stored one (to the 6 places it was written with), which checks that the records are the ones
the pattern was made from. The result is validated against the pattern schema and written
atomically (`patterns.save_pattern`); a file whose stds are already current is left alone.

`--check` writes nothing and exits 1 if a file would change. patterns/slimming-vgg16-c10.json
is skipped: it is being re-made with a new recipe (issue 29, item 4), not restated.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from archsearch import patterns
from archsearch.errors import ArchsearchError

LIBRARY = Path(__file__).resolve().parents[1] / "patterns"
SKIP = {"slimming-vgg16-c10"}  # re-made with a new recipe, not restated
TOLERANCE = 1e-6  # the files round to 6 places


def _merge(stored: Any, fresh: Any, where: str) -> Any:
    """`stored` with every `*std` field taken from `fresh`; every other number must agree."""
    if isinstance(stored, dict):
        if stored.keys() != fresh.keys():
            raise ArchsearchError(f"{where}: fields {sorted(stored)} where the extractor writes {sorted(fresh)}")
        return {k: fresh[k] if k.endswith("std") else _merge(v, fresh[k], f"{where}.{k}") for k, v in stored.items()}
    if isinstance(stored, list):
        if not isinstance(fresh, list) or len(stored) != len(fresh):
            raise ArchsearchError(f"{where}: {len(stored)} values stored, {len(fresh)} recomputed")
        return [_merge(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(stored, fresh))]
    if stored is None or fresh is None:
        if stored is not fresh:
            raise ArchsearchError(f"{where}: stored {stored!r}, recomputed {fresh!r}")
        return stored
    if abs(float(stored) - float(fresh)) > TOLERANCE:
        raise ArchsearchError(f"{where}: stored mean {stored}, recomputed {fresh} from the per-seed proposals")
    return stored


def restated(pat: dict) -> dict:
    """A copy of `pat` whose std fields are recomputed from its proposals by today's extractor."""
    per_seed = pat["proposals"]
    if not per_seed:
        raise ArchsearchError(f"{pat['name']}: no per-seed proposals to recompute from")
    out = copy.deepcopy(pat)
    fresh = patterns.summaries(pat["kind"], per_seed)
    for part in ("layers", "stage"):
        out[part] = _merge(pat[part], fresh[part], f"{pat['name']}.{part}")
    out["accuracy"] = _merge(pat["accuracy"], patterns.accuracy_summary(per_seed), f"{pat['name']}.accuracy")
    return patterns.validate(out, pat["name"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="pattern names (default: every committed one but the skipped)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    args = ap.parse_args(argv)
    try:
        names = args.names or sorted(p.name[:-len(".json")] for p in LIBRARY.glob("*.json"))
        stale = []
        for name in names:
            if name in SKIP:
                print(f"{name}: skipped (being re-made with a new recipe)")
                continue
            path = LIBRARY / f"{name}.json"
            if not path.is_file():
                raise ArchsearchError(f"no committed pattern {path.name} in {LIBRARY}")
            pat = patterns.load_pattern(path)
            new = restated(pat)
            if new == pat:
                print(f"{name}: stds current")
                continue
            stale.append(name)
            if not args.check:
                patterns.save_pattern(new, path)
            print(f"{name}: {'stale' if args.check else 'rewritten'}")
    except ArchsearchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
