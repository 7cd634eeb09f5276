"""Sweep modes as strategy objects: `grid`, `search` and `table`, registered by name (`MODES`).

A mode is everything that differs between sweeps: how its spec is checked, what its plan holds,
which sampler draws its points and which are queued up front, a point's identity (what status
counts once, however often it is retried) and label, how a trial trains, and how the finished
study is reported. The plan (`plan.py`), the worker loop (`runner.py`) and the commands ask the
mode; none of them branches on its name. A new mode is one class here plus its tests.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from ..compare import budget_tag
from ..budget import full_cost
from ..latency import LatencyTable
from ..measures import Budget, parse_budget
from ..config import PRESETS
from ..counting import count
from ..errors import ArchsearchError
from ..experiment import Point, net_numbers, point_schedule, result_numbers, train_point
from ..generate import GENERATORS, KINDS, arm_generator, pattern_stage_values, split_arm
from ..names import parse_target
from ..progress import EpochProgress
from . import results, table, table_report
from .points import (arch_for, grid_point, grid_space, latency_measure, net_key, plan_budget, plan_value,
                     record_latency, resolve_pattern, search_arch, solve_point, target_net, train_config)
from .processes import train_processes
from .storage import frozen


def want(cond: bool, where: str, msg: str) -> None:
    """A spec's rule: one line naming the spec, unless `cond` holds."""
    if not cond:
        raise ArchsearchError(f"{where}: {msg}")


class Mode(ABC):
    """The operations a sweep mode gives the plan, the worker loop and the commands."""

    name = ""
    dedups = True      # two workers can be handed one point at once: the second attempt is marked a duplicate
    asks_ahead = True  # points not queued yet are drawn by the sampler (else: only queued points run)
    ignores_unidentified = False  # status skips trials of no point (`identity` None) rather than count them
    report_files = "trials.*"  # what `archsearch report` writes besides report.*
    columns: list[str] = []    # the report's columns besides results.SUMMARY_COLS

    # -- the spec and the plan --------------------------------------------------------------------
    @abstractmethod
    def validate(self, spec, where: str) -> None:
        """Check the rules of the mode (one line, ArchsearchError); nothing is trained."""

    @abstractmethod
    def build(self, spec, plan: dict, workdir: Path, *, device: str, data_dir: str | None, log,
              artifacts: str | None) -> dict:
        """The study's plan: the common part `plan` and the mode's own."""

    def sampler_pruner(self, plan: dict):
        return optuna.samplers.RandomSampler(seed=0), optuna.pruners.NopPruner()

    def seed_study(self, study: optuna.Study, plan: dict) -> None:
        """Queue the points a new study starts with."""

    # -- progress ---------------------------------------------------------------------------------
    @abstractmethod
    def total(self, plan: dict) -> int:
        """How many points the sweep has."""

    def identity(self, t: FrozenTrial):
        """The point a trial is an attempt at (None: no point; status ignores it)."""
        return t.system_attrs.get("failed_trial", t.number)

    def blocked(self, plan: dict, failed: list[FrozenTrial], seen: set) -> int:
        """Points that cannot run because a point they need failed for good."""
        return 0

    def label(self, params: dict) -> str:
        return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())

    def refill(self, study: optuna.Study, plan: dict) -> None:
        """Queue the points that became ready (before a worker asks)."""

    def is_point(self, trial: optuna.Trial) -> bool:
        """Whether an asked trial is a point (not one handed out after the queue emptied)."""
        return True

    def datasets(self, plan: dict) -> list[str | None]:
        """The datasets the sweep trains on (None: the target's)."""
        return [None]

    def before_fail(self, trial: optuna.Trial, plan: dict) -> None:
        """Called before an interrupted trial is failed, so that reports can name its point."""

    def is_hole(self, t: FrozenTrial, retry_attr: str) -> bool:
        """Whether a failed point leaves the sweep unfinished (a failed `sweep run`)."""
        return True

    # -- a trial and the report -------------------------------------------------------------------
    @abstractmethod
    def train(self, study: optuna.Study, trial: optuna.Trial, plan: dict, ctx, label: str) -> float:
        """Train the trial's point and return its best test accuracy (%)."""

    def write_outputs(self, study, plan: dict, st, out_dir: Path, x: str, png: bool) -> tuple[Path, Path]:
        return results.write_outputs(study, plan, st, out_dir, x=x, png=png, columns=self.columns)

    def summary_table(self, study, plan: dict) -> str:
        return results.summary_table(study)

    def efficiency_rows(self, study, ref: str) -> list[dict]:
        return results.completed_rows(study)


class _FromScratch(Mode):
    """Grid and search: each trial a generated net, trained from scratch on the target's data."""

    def validate(self, spec, where: str) -> None:
        s = spec
        want(s.target is not None, where, f"{s.mode} mode needs a target (e.g. target = \"vgg16-c10\")")
        want(s.rows is None and s.arms is None, where, "rows and arms belong to table mode (mode = \"table\")")
        parse_target(s.target)
        want(all(split_arm(g)[0] in GENERATORS for g in s.generators), where,
              f"generators must be drawn from {', '.join(GENERATORS)} (a pattern's generator may name one of "
              f"several patterns: transferred:NAME), got {s.generators!r}")
        for g in s.generators:
            try:
                arm_generator(g)
            except ArchsearchError as e:
                want(False, where, str(e))
        want(len(set(s.generators)) == len(s.generators), where, "generators are listed twice")
        want(s.kinds is None or len(set(s.kinds)) == len(s.kinds), where, "kinds are listed twice")
        for sec in ("train", "extract"):
            preset = getattr(s, sec)["preset"]
            want(preset in PRESETS, where, f"{sec}.preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        want(s.grace > s.heartbeat, where, f"run.grace ({s.grace}s) must exceed run.heartbeat ({s.heartbeat}s)")

    def build(self, spec, plan: dict, workdir: Path, *, device: str, data_dir: str | None, log,
              artifacts: str | None) -> dict:
        patterns: dict[str, dict[str, dict]] = {"own": {}, "transferred": {}}
        tgt = parse_target(spec.target)
        for role in ("own", "transferred"):
            for src in spec.patterns.get(role, []):
                pat = resolve_pattern(src, role, spec, workdir, device, data_dir, log)
                first = patterns[role].get(pat["kind"])
                if first is not None and any(split_arm(g)[1] is None and arm_generator(g).role == role
                                             for g in spec.generators):
                    raise ArchsearchError(f"patterns.{role} has two {pat['kind']} patterns ({first['name']} and "
                                          f"{pat['name']}): name the one each arm reads, e.g. "
                                          f"generators = [\"{'guided' if role == 'own' else 'transferred'}:{pat['name']}\"]")
                same = pat["arch"] == tgt.spec_name and pat["data"] == tgt.data
                if role == "own" and not same:
                    raise ArchsearchError(f"patterns.own lists {pat['name']} ({pat['arch']}-{pat['data']}), but the "
                                          f"target is {spec.target}: put patterns from elsewhere under "
                                          "patterns.transferred")
                patterns[role][pat["kind"] if first is None else f"{pat['kind']}:{pat['name']}"] = pat
        kinds = spec.kinds or sorted({p["kind"] for r in patterns.values() for p in r.values()}, key=KINDS.index)
        plan = {**plan, "patterns": patterns, "kinds": kinds}
        full = count(target_net(plan))
        plan["full"] = {"params": full.params, "macs": full.macs}
        # (by latency: the full target's latency, measured now, is what fractions are of)
        cost = full_cost(target_net(plan), spec.by, latency_measure(plan).check() if spec.by == "latency" else None)
        plan["budgets"] = [plan_value(b, spec.by) for b in self.budgets(spec, cost)]
        return self.check_points(spec, plan)

    def budgets(self, spec, full_cost: float) -> list[Budget]:
        """Absolute budgets: the listed ones, or fractions of the full target's cost."""
        if spec.budgets:
            return [parse_budget(str(b), spec.by) for b in spec.budgets]
        return [Budget(((spec.by, f * full_cost),)) for f in spec.fractions]

    @abstractmethod
    def check_points(self, spec, plan: dict) -> dict:
        """Build every point of the plan once (a budget a generator cannot meet fails here, before
        any training), and add what the mode's points need."""

    @abstractmethod
    def point(self, study: optuna.Study, trial: optuna.Trial, plan: dict, ctx):
        """(kind, generator, budget, seed, net, run dir) of the trial's point."""

    def report(self, trial: optuna.Trial, epoch: int, acc: float, prunable: bool) -> None:
        """An epoch's accuracy as the trial's intermediate value (search: the pruner's input)."""

    def train(self, study: optuna.Study, trial: optuna.Trial, plan: dict, ctx, label: str) -> float:
        s, tr = plan["spec"], plan["spec"]["train"]
        kind, gen, budget, seed, arch, run = self.point(study, trial, plan, ctx)
        cfg = train_config(tr)
        sched = point_schedule(cfg, s["schedule"], arch, target_net(plan), cap=tr.get("cap"))
        nums = net_numbers(arch)
        for k, v in (("generator", gen), ("kind", kind), ("budget", budget if isinstance(budget, str) else
                                                                     float(budget)), ("seed", int(seed)),
                     *nums.items(), ("run_dir", str(run)), ("epochs", sched.epochs)):
            trial.set_user_attr(k, v)
        bar = EpochProgress(f"{label} {self.label(trial.params)}") if ctx.epoch_progress else None
        prunable = "reference" not in trial.user_attrs  # the references always run to the end: the comparison

        def hook(st) -> None:
            if bar is not None:
                bar(st)
            self.report(trial, st.epoch, st.test_acc, prunable)

        if int(tr.get("nproc", 1)) > 1:  # one network over several processes: the train command under torchrun
            r = train_processes(plan, arch, kind=s["schedule"], seed=int(seed), run=run, ctx=ctx)
            for h in r.history:  # reported after the fact: a multi-process trial is not pruned early
                self.report(trial, h["epoch"], h["test_acc"], False)
        else:
            r = train_point(Point(arch, sched, int(seed), run), ctx.data(plan), device=ctx.device,
                            checkpoint_every=cfg.checkpoint_every, progress=hook)
        for k, v in result_numbers(r).items():
            trial.set_user_attr(k, v)
        record_latency(trial, arch, plan)
        return 100 * r.final_acc  # the objective (search mode's TPE) is the headline: the final epoch


class GridMode(_FromScratch):
    """Every (kind, generator, budget, seed), drawn by Optuna's grid sampler."""

    name = "grid"

    def validate(self, spec, where: str) -> None:
        super().validate(spec, where)
        s = spec
        want((s.budgets is None) != (s.fractions is None), where, "give exactly one of budgets or fractions")
        if s.budgets is not None:
            # one run directory per budget, named by its tag: two budgets with one tag would share it
            tags = [parse_budget(str(b), s.by).tag() for b in s.budgets]
            want(len(set(tags)) == len(tags), where, f"budgets are listed twice (as {', '.join(tags)})")
        else:
            want(len(set(s.fractions)) == len(s.fractions), where, "fractions are listed twice")
        for role, what in (("own", f"a pattern proposed on {s.target}"), ("transferred", "a pattern from elsewhere")):
            needs = sorted(g for g in s.generators if arm_generator(g).role == role)
            want(not needs or s.patterns.get(role), where,
                  f"generator(s) {', '.join(needs)} need patterns.{role} ({what})")
        want(s.kinds is not None or s.patterns.get("own") or s.patterns.get("transferred"), where,
              "with no patterns, say which kinds to generate (kinds = [\"channels\"])")

    def check_points(self, spec, plan: dict) -> dict:
        """Every point built once; a latency-bound net solved for every seed and measured end to
        end now, and kept in the plan (`points.arch_for`)."""
        timed_budgets = {b for b in plan["budgets"] if "latency" in plan_budget(plan, b).measures}
        table = LatencyTable(latency_measure(plan).check()) if timed_budgets else None
        nets = {}
        for kind, g, b in itertools.product(plan["kinds"], spec.generators, plan["budgets"]):
            timed = b in timed_budgets and kind != "sparsity"  # a sparse net's latency is its dense net's
            # one net for every seed unless the generator draws from the seed: a net measured
            # again per seed would differ by timing noise alone
            seeded = arm_generator(g).seeded
            for seed in range(spec.seeds if timed and seeded else 1):
                try:
                    solved = solve_point(plan, kind, g, b, seed, table)
                except ArchsearchError as e:
                    raise ArchsearchError(f"{g} ({kind}) at {budget_tag(b)} {spec.by}: {e}") from None
                if timed:  # the net, with what the plan-time measure found, for the seeds it serves
                    solved.spec.meta["latency"] = {"seconds": solved.costs["latency_measured"],
                                                   "table_estimate": solved.costs["latency"],
                                                   "measure": table.measure.to_dict()}
                    net = solved.spec.to_dict()
                    nets.update({net_key(kind, g, b, s): net for s in ([seed] if seeded else range(spec.seeds))})
        if table is not None:
            table.save()
        return {**plan, "nets": nets} if nets else plan

    def sampler_pruner(self, plan: dict):
        return _GridSampler(grid_space(plan), seed=0), optuna.pruners.NopPruner()

    def total(self, plan: dict) -> int:
        return len(plan["kinds"]) * len(plan["spec"]["generators"]) * len(plan["budgets"]) * plan["spec"]["seeds"]

    def identity(self, t: FrozenTrial):
        return t.system_attrs.get("grid_id")

    def label(self, params: dict) -> str:
        if not params:
            return super().label(params)
        return (f"{params.get('generator')} {params.get('kind')} {budget_tag(params.get('budget', 0))} "
                f"seed {params.get('seed')}")

    def before_fail(self, trial: optuna.Trial, plan: dict) -> None:
        grid_point(trial, plan)

    def point(self, study, trial, plan, ctx):
        kind, gen, budget, seed = grid_point(trial, plan)
        arch = arch_for(plan, kind, gen, budget, int(seed))
        run = ctx.workdir / "trials" / kind / f"{gen.replace(':', '_')}-{budget_tag(budget)}-s{seed}"
        return kind, gen, budget, seed, arch, run


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, without its `study.stop()` after the last point: workers here
    drive trials with ask/tell and decide themselves when the grid is done."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


class SearchMode(_FromScratch):
    """Per-stage width multipliers at one budget, searched by TPE from the pattern's, with the
    pattern's and a uniform net as reference trials; weak trials pruned by the median rule."""

    name = "search"
    dedups = False
    columns = ["search_params"]

    def budgets(self, spec, full_cost: int) -> list[float]:
        """The one budget searched at: search.budget, or search.fraction of the full target's cost."""
        if spec.search.get("budget") is not None:
            return [parse_budget(str(spec.search["budget"]), spec.by)]
        return [Budget(((spec.by, float(spec.search["fraction"]) * full_cost),))]

    def validate(self, spec, where: str) -> None:
        super().validate(spec, where)
        s, se = spec, spec.search
        want(s.patterns.get("own") or s.patterns.get("transferred"), where,
              "search mode starts from a pattern: set patterns.own (or patterns.transferred)")
        want((se["budget"] is None) != (se["fraction"] is None), where,
              "search needs exactly one of search.budget or search.fraction")
        if se["budget"] is not None:
            parse_budget(str(se["budget"]), s.by)
        want(se["low"] < se["high"], where, "search.low and search.high must satisfy 0 < low < high")

    def check_points(self, spec, plan: dict) -> dict:
        pats = plan["patterns"]
        pat = next(iter(pats["own"].values()), None) or next(iter(pats["transferred"].values()))
        if pat["kind"] != "channels":
            raise ArchsearchError("search mode searches channel widths: its pattern must be a channels pattern")
        vals, _, _ = pattern_stage_values(pat, target_net(plan))
        plan["search_start"] = vals
        plan["search_pattern"] = pat["name"]
        search_arch(plan, vals)
        return plan

    def sampler_pruner(self, plan: dict):
        se = plan["spec"]["search"]
        sampler = optuna.samplers.TPESampler(seed=int(se["sampler_seed"]), n_startup_trials=int(se["startup_trials"]))
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=int(se["startup_trials"]),
                                              n_warmup_steps=int(se["warmup_epochs"]))
                  if se["pruner"] == "median" else optuna.pruners.NopPruner())
        return sampler, pruner

    def seed_study(self, study: optuna.Study, plan: dict) -> None:
        se = plan["spec"]["search"]
        lo, hi = float(se["low"]), float(se["high"])
        start = [min(hi, max(lo, v)) for v in plan["search_start"]]
        study.enqueue_trial({f"stage{k}": v for k, v in enumerate(start)},
                            user_attrs={"reference": f"pattern {plan['search_pattern']}"})
        if se["uniform_reference"]:
            study.enqueue_trial({f"stage{k}": 1.0 for k in range(len(plan["search_start"]))},
                                user_attrs={"reference": "uniform"})

    def total(self, plan: dict) -> int:
        return int(plan["spec"]["search"]["trials"])

    def is_hole(self, t: FrozenTrial, retry_attr: str) -> bool:
        # a point that fails on its own (diverged) is an outcome the search goes past; one failed
        # by the machine or by a bug is not
        return bool(t.user_attrs.get(retry_attr))

    def report(self, trial: optuna.Trial, epoch: int, acc: float, prunable: bool) -> None:
        trial.report(100 * acc, epoch - 1)
        if prunable and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} ({100 * acc:.2f}%)")

    def point(self, study, trial, plan, ctx):
        se = plan["spec"]["search"]
        lo, hi = float(se["low"]), float(se["high"])
        ratios = [trial.suggest_float(f"stage{k}", lo, hi) for k in range(len(plan["search_start"]))]
        # a retry resumes in its first attempt's directory: the point's identity, as status counts it
        run = ctx.workdir / "trials" / "search" / f"trial{self.identity(frozen(study, trial)):04d}"
        return "channels", "search", plan["budgets"][0], int(se["seed"]), search_arch(plan, ratios), run


class TableMode(Mode):
    """The paper's tables: per (row, arm, seed) one trial; the proposals first, each row's other
    arms queued once its proposal completes (`table.py`, its arms `table.ARMS`)."""

    name = "table"
    asks_ahead = False
    ignores_unidentified = True
    report_files = "table.html"

    def validate(self, spec, where: str) -> None:
        table.validate_table(spec, where)

    def build(self, spec, plan: dict, workdir: Path, *, device: str, data_dir: str | None, log,
              artifacts: str | None) -> dict:
        return {**plan, "patterns": {"own": {}, "transferred": {}}, "kinds": [], "budgets": [], "full": {},
                **table.build_table_plan(spec, workdir, data_dir, artifacts)}

    def seed_study(self, study: optuna.Study, plan: dict) -> None:
        table.enqueue_proposals(study, plan)

    def total(self, plan: dict) -> int:
        return table.total(plan)

    def identity(self, t: FrozenTrial):
        return t.user_attrs.get("point")  # None: a trial asked for when nothing was queued (ignored)

    def blocked(self, plan: dict, failed: list[FrozenTrial], seen: set) -> int:
        return table.blocked(plan, {t.user_attrs.get("point") for t in failed}, seen)

    def label(self, params: dict) -> str:
        return table.trial_label(params) if params else super().label(params)

    def refill(self, study: optuna.Study, plan: dict) -> None:
        table.enqueue_ready(study, plan)

    def is_point(self, trial: optuna.Trial) -> bool:
        return "point" in trial.user_attrs

    def datasets(self, plan: dict) -> list[str | None]:
        return sorted({r["data"] for r in plan["rows"]})

    def train(self, study: optuna.Study, trial: optuna.Trial, plan: dict, ctx, label: str) -> float:
        return table.run_trial(study, trial, plan, ctx, label)

    def write_outputs(self, study, plan: dict, st, out_dir: Path, x: str, png: bool) -> tuple[Path, Path]:
        if not table_report.completed(study):
            raise ArchsearchError(f"study {study.study_name} has no completed trials yet")
        return table_report.write_outputs(study, plan, st, out_dir, png=png)

    def summary_table(self, study, plan: dict) -> str:
        return table_report.summary_markdown(study, plan)

    def efficiency_rows(self, study, ref: str) -> list[dict]:
        raise ArchsearchError(f"{study.study_name} is a table sweep: its figure is table.html, written by "
                              f"`archsearch report {ref}` (and by `sweep run`)")


MODES: dict[str, Mode] = {m.name: m for m in (GridMode(), SearchMode(), TableMode())}


def get_mode(name: str) -> Mode:
    try:
        return MODES[name]
    except KeyError:
        raise ArchsearchError(f"unknown sweep mode {name!r}; known: {', '.join(MODES)}") from None


__all__ = ["Mode", "MODES", "get_mode", "GridMode", "SearchMode", "TableMode"]
