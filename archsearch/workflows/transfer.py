"""Transfer as `archsearch transfer` does it: a pattern's guided or transferred nets and the
baselines at matched budgets on a target, their table, and (with training) each trained from
scratch over seeds, with a results table and an efficiency figure.

`plan` checks every choice (budgets, generators, kinds) against the generator registry and
the pattern before anything is built; `generate_specs` writes the specs and their table;
`train_specs` trains them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import patterns as P
from .._io import read_json
from ..compare import Generated, generate_all, parse_fractions, spec_row, train_all, trained_rows, write_tables
from ..config import TrainConfig
from ..data import load_dataset, subset_train
from ..errors import ArchsearchError
from ..budget import full_cost
from ..latency import LatencyMeasure, LatencyTable, auto_round
from ..measures import Budget, check_measure, fmt_value, parse_budgets
from ..generate import GENERATORS, KINDS, OFFERED
from ..names import parse_target
from ..plot import efficiency_figure, write_html
from ..progress import EpochProgress
from ..schemas import TransferRow, check
from ..spec import ArchSpec

DEFAULT_FRACTIONS = "0.05,0.1,0.2,0.4"
SPEC_COLS = ["generator", "budget", "binding", "params", "macs", "latency_ms", "stages", "error_pct", "spec"]
LATENCY_COLS = ["latency_est_ms", "est_error_pct"]  # with a latency bound: the table's estimate and its error
TRAINED_COLS = ["generator", "budget", "params", "macs", "latency_ms", "epochs", "seeds", "final_acc", "best_acc"]


@dataclass
class Transfer:
    target: str                     # ARCH-DATA as given
    config: TrainConfig             # the target's width and, with training, how to train
    pattern: dict
    pattern_path: str
    kind: str                       # channels | sparsity | depth
    by: str                         # params | macs | latency: what a bare budget number bounds
    baselines: list[str]
    full: ArchSpec                  # the full target at the config's width
    full_cost: float                # its params, MACs or latency (seconds) under `by`
    budgets: list[Budget]
    out: Path
    latency: LatencyMeasure | None = None  # how every written net's latency is measured (None: not)


def resolve_pattern(name: str | None) -> tuple[dict, str]:
    """A library pattern by name or file, else the one `extract` wrote last: (pattern, path)."""
    if name:
        e = P.find(name)
        return P.load_pattern(e.path), str(e.path)
    last = P.last_pattern()
    if last is not None:
        return P.load_pattern(last), str(last)
    names = ", ".join(e.name for e in P.entries()) or "none (run `archsearch extract` first)"
    raise ArchsearchError(f"no pattern given and none extracted yet: pass --from NAME (library: {names})")


def parse_baselines(text: str) -> list[str]:
    """A comma list of the registry's baselines and sanity checks (`OFFERED`), or 'none' (or nothing)."""
    bl = [] if text.strip() in ("", "none") else [b.strip() for b in text.split(",")]
    for b in bl:
        if b not in OFFERED:
            raise ArchsearchError(f"unknown baseline {b!r}; use {', '.join(OFFERED)} or none")
    return bl


def plan(target: str, source: str | None, config: TrainConfig, *, budgets: str | None = None,
         fractions: str | None = None, by: str = "params", kind: str | None = None, baselines: str = "uniform",
         out_dir: str | None = None, latency: LatencyMeasure | None = None) -> Transfer:
    """Check every choice; `budgets` are absolute (e.g. 0.5M,1M, or macs=20M,params=0.5M;...),
    `fractions` of the full target under `by`. `latency`: the measure of every net's latency."""
    tgt = parse_target(target)
    check_measure(by)
    if latency is not None:
        latency.check()
    if budgets and fractions:
        raise ArchsearchError("give --budget or --fractions, not both")
    bl = parse_baselines(baselines)
    pattern, ppath = resolve_pattern(source)
    kind = kind or pattern["kind"]
    if kind not in KINDS:
        raise ArchsearchError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    for b in bl:
        g = GENERATORS[b]
        if kind not in g.kinds:
            raise ArchsearchError(f"{b} is a {'/'.join(g.kinds)} baseline ({g.about}); use it with --kind {g.kinds[0]}")
    if kind != pattern["kind"]:
        raise ArchsearchError(f"pattern {pattern['name']} is a {pattern['kind']} pattern; it cannot generate "
                              f"{kind} (use --kind {pattern['kind']}, or another pattern)")
    bs = parse_budgets(budgets, by) if budgets else None
    if latency is None and (by == "latency" or any("latency" in b.measures for b in bs or [])):
        raise ArchsearchError("a latency budget needs a latency measure: leave --no-latency out")
    full = tgt.base_spec(config.width)
    cost = full_cost(full, by, latency)
    if bs is None:
        bs = [Budget(((by, f * cost),)) for f in parse_fractions(fractions or DEFAULT_FRACTIONS)]
    out = Path(out_dir or f"runs/transfer/{pattern['name']}-to-{target}")
    return Transfer(target, config, pattern, ppath, kind, by, bl, full, cost, bs, out, latency)


def auto_round_for(t: Transfer, log: Callable[[str], None]) -> int:
    """`--round auto` for the transfer's target under its latency measure (`latency.auto_round`)."""
    if t.latency is None:
        raise ArchsearchError("--round auto reads the latency table: leave --no-latency out")
    table = LatencyTable(t.latency)
    auto = auto_round(t.full, table)
    table.save()
    log(f"--round auto: {auto.multiple} ({auto.why}; {t.latency.describe()})")
    return auto.multiple


@dataclass
class Specs:
    generated: list[Generated]      # one per (generator, budget); a failure has no spec
    rows: list[dict]                # the table's rows (also written as table.md/.csv/.json)
    cols: list[str]
    summary: str                    # the pattern, the target and the stage map, in a line

    @property
    def made(self) -> list[Generated]:
        return [g for g in self.generated if g.spec is not None]

    @property
    def failed(self) -> list[Generated]:
        return [g for g in self.generated if g.spec is None]

    def check_complete(self) -> None:
        """Refuse (after the table is written) when some (generator, budget) could not be made."""
        failed = self.failed
        if failed:
            raise ArchsearchError(f"{len(failed)} of {len(self.generated)} (generator, budget) could not be generated "
                                  f"(see the table's failure column); first: {failed[0].generator} "
                                  f"{failed[0].budget.describe()}: {failed[0].failure}")


def generate_specs(t: Transfer, *, floor: float = 0.0, round_to: int = 1, seed: int = 0) -> Specs:
    """Write one ArchSpec JSON per (generator, budget) and table.md/.csv/.json to `t.out`."""
    gens = generate_all(t.full, t.target, t.budgets, pattern=t.pattern, baselines=t.baselines,
                        sparse=t.kind == "sparsity", depth=t.kind == "depth", floor=floor, round_to=round_to,
                        seed=seed, out_dir=t.out, latency=t.latency)
    made = [g for g in gens if g.spec is not None]
    if not made:
        raise ArchsearchError(f"no architecture could be generated: {gens[0].failure}")
    meta = made[0].spec.meta
    pat, width = t.pattern, t.config.width
    sparse = t.kind == "sparsity"
    summary = (f"pattern {pat['name']} ({pat['kind']}, {pat['arch']}-{pat['data']}) -> {t.target} width {width:g}; "
               f"stage map (target <- source): {meta.get('stage_map', 'n/a')}; full target "
               f"{fmt_value(t.by, t.full_cost)} {t.by}; {'sparse params count non-zero weights only' if sparse else ''}")
    rows = [spec_row(g) for g in gens]
    with_lat = any("latency" in b.measures for b in t.budgets)
    cols = (SPEC_COLS[:-3] + (LATENCY_COLS if with_lat else []) + SPEC_COLS[-3:]
            + (["failure"] if len(made) < len(gens) else []))
    lat = (f"latency_ms: measured end to end, {t.latency.describe()}" if t.latency else "latency: not measured")
    header = (f"# {pat['name']} -> {t.target} (width {width:g}, kind {t.kind})\n\n"
              f"pattern: {t.pattern_path}\nstage map (target stage <- source stage): {meta.get('stage_map', 'identity')}\n"
              f"binding: the measure whose bound binds; error_pct: (achieved - bound) / bound on it; {lat}"
              + ("; latency_est_ms: the per-layer table's estimate, est_error_pct: its error against the measured"
                 if with_lat else "") + f"; stages: widths per stage {'(mean density per stage)' if sparse else ''}")
    write_tables(rows, cols, t.out / "table", header)
    return Specs(gens, rows, cols, summary)


def train_specs(t: Transfer, specs: Specs, *, schedule_kind: str = "scratch-e", seeds: int = 2,
                data_dir: str | None = None, train_subset: int | None = None, device: str = "auto",
                log: Callable[[str], None] | None = None) -> list[dict]:
    """Train every spec made from scratch over `seeds` seeds (resumable run folders in
    OUT/train); write results.md/.csv/.json and efficiency.html; return the results' rows."""
    data = subset_train(load_dataset(parse_target(t.target).data, data_dir), train_subset)
    results = train_all(specs.made, data, config=t.config, schedule_kind=schedule_kind, seeds=seeds, base=t.full,
                        out_dir=t.out / "train", device=device, progress=lambda label: EpochProgress(label), log=log)
    rows = trained_rows(results)
    preset = t.config.name
    write_tables(rows, TRAINED_COLS + ["final_acc_mean", "final_acc_std", "best_acc_mean", "best_acc_std", "stages"],
                 t.out / "results", f"# trained from scratch: {t.target}, {schedule_kind}, preset {preset}, {seeds} seeds\n\n"
                 "Test accuracy (%) at the final epoch (the headline) and at the best epoch, mean ± sample std "
                 "(ddof=1) over the seeds.")
    caption = (f"{t.pattern['name']} -> {t.target} width {t.config.width:g}; {schedule_kind}, preset {preset}, "
               f"{results[0].epochs if schedule_kind == 'scratch-e' else 'scaled'} epochs, {seeds} seeds"
               + (f", {train_subset} training images" if train_subset else ""))
    write_html(efficiency_figure(rows, x=t.by, title=f"parameter efficiency on {t.target}", caption=caption),
               t.out / "efficiency.html")
    return rows


def results_file(source: str) -> Path | None:
    """The results table `transfer --train` wrote, given as its folder or its results.json;
    None when `source` is neither (a sweep spec or a study name)."""
    path = Path(source)
    if path.is_dir() and (path / "results.json").exists():
        path = path / "results.json"
    return path if path.suffix == ".json" and path.is_file() else None


def load_results(path: Path) -> list[dict]:
    """The rows of a results table that `transfer --train` wrote, each checked."""
    rows = read_json(path, "results")
    if not isinstance(rows, list) or not rows:
        raise ArchsearchError(f"{path} is not a results table of `archsearch transfer --train` (a list of rows)")
    for i, r in enumerate(rows):
        check(TransferRow, r, f"{path} is not a results table of `archsearch transfer --train`: row {i}")
    return rows
