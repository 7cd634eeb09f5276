"""A sweep's plan and its Optuna study.

One study per spec (and scale). `build_plan` resolves the patterns (extracting the ones the
spec asks for), checks that every architecture of the grid can be built at its budget, and
`create_or_load` stores the whole plan in the study's user attributes, so that a worker on
another machine needs nothing but the storage URL and the study name (`load_study`).
The worker loop that runs the study's trials is `runner.py`; launching workers, `launch.py`.
"""

from __future__ import annotations

import copy
import datetime as _dt
import sys
import warnings
from pathlib import Path
from typing import Callable

import optuna

from .. import __version__
from .. import patterns as P
from ..compare import budget_tag
from ..counting import count
from ..data import load_dataset
from ..errors import ArchsearchError
from ..generate import channel_spec, generate, get_generator, pattern_stage_values
from ..names import parse_target
from ..progress import EpochProgress
from ..propose import get_proposer, parse, propose
from ..schemas import PlanModel, check
from ..spec import ArchSpec
from .spec import LEGACY_DEFAULTS, SweepSpec, parse_spec
from .storage import describe, open_storage
from .table import build_table_plan, enqueue_proposals

# (here, below runner.py and launch.py, so that importing any of the three sets them)
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Optuna warns that heartbeats are meant for Study.optimize; the worker loop (runner.py) runs
# the same heartbeat thread and stale-trial check around ask/tell itself.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

PLAN_ATTR = "archsearch:plan"
# 2: the spec in the plan holds every default (schemas.Sweep*); 3: [train] width and checkpoint_every
# default to the preset's and [extract] preset to `paper`, and `filled` names what was defaulted
# (sweep.spec.LEGACY_DEFAULTS). 1 and 2 are read and upgraded.
PLAN_VERSION = 3
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the plan ---------------------------------------------------------------------------------------
def default_workdir(spec: SweepSpec) -> Path:
    return Path("runs") / "sweeps" / spec.study_name


def _proposer_kind(source: str) -> str | None:
    try:
        return get_proposer(parse(source).method).kind
    except ArchsearchError:
        return None


def _resolve_pattern(source: str, role: str, spec: SweepSpec, workdir: Path, device: str, data_dir: str | None,
                     log: Log) -> dict:
    """A library name or file, or a proposer spec extracted in the sweep (per [extract]);
    `extract.in_sweep` makes the sweep extract its own patterns even when the library has one."""
    ex = spec.extract
    if not (ex["in_sweep"] and role == "own"):
        p = Path(source)
        if p.suffix == ".json" and p.is_file():
            return P.load_pattern(p)
        try:
            return P.load_pattern(P.find(source).path)
        except ArchsearchError:
            if _proposer_kind(source) is None:
                raise
    if _proposer_kind(source) is None:
        raise ArchsearchError(f"pattern {source!r} is not a proposer spec (METHOD-ARCH-DATA) that the sweep can extract")
    return extract_in_sweep(source, spec, workdir, device, data_dir, log)


def extract_in_sweep(source: str, spec: SweepSpec, workdir: Path, device: str, data_dir: str | None,
                     log: Log) -> dict:
    ex = spec.extract
    path = workdir / "patterns" / f"{source}.json"
    kw = {k: ex[k] for k in ("ratio", "preset", "width", "epochs", "sparsity", "floor", "train_subset", "stage_ratios",
                             "skip", "rounds", "rewind_epoch") if ex.get(k) is not None}
    seeds = int(ex["seeds"])
    data = load_dataset(parse(source).target.data, data_dir)
    log(f"extract {source}: {seeds} seed(s), {kw} -> {path}")
    props = [propose(source, data, seed=s, workdir=workdir / "proposals", device=device,
                     progress=EpochProgress(f"propose {source} seed {s + 1}/{seeds}"), **kw) for s in range(seeds)]
    command = f"archsearch sweep run {spec.path}" + (f" --scale {spec.scale}" if spec.scale else "")
    pat = P.extract(props, name=source, command=command)
    P.save_pattern(pat, path)
    st = pat["stage"]
    log(f"extract {source}: base {100 * pat['accuracy']['base']['mean']:.2f}%, per-stage "
        f"{'ratio' if pat['kind'] == 'channels' else 'density'} "
        f"{[round(v, 3) for v in st.get('ratio_mean', st.get('density_mean', []))]}")
    return pat


def _target(plan: dict) -> ArchSpec:
    t = parse_target(plan["spec"]["target"])
    return t.base_spec(float(plan["spec"]["train"]["width"]))


def grid_space(plan: dict) -> dict[str, list]:
    s = plan["spec"]
    return {"kind": plan["kinds"], "generator": s["generators"], "budget": plan["budgets"],
            "seed": list(range(s["seeds"]))}


def grid_point(trial: optuna.Trial, plan: dict) -> tuple[str, str, float, int]:
    """The grid point (kind, generator, budget, seed) the sampler gave `trial`."""
    sp = grid_space(plan)
    return (trial.suggest_categorical("kind", sp["kind"]), trial.suggest_categorical("generator", sp["generator"]),
            trial.suggest_categorical("budget", sp["budget"]), trial.suggest_categorical("seed", sp["seed"]))


def arch_for(plan: dict, kind: str, generator: str, budget: float, seed: int) -> ArchSpec:
    """The one place a sweep turns a grid point into an architecture."""
    s = plan["spec"]
    role = get_generator(generator).role
    pattern = plan["patterns"][role].get(kind) if role else None
    if role and pattern is None:
        raise ArchsearchError(f"no {role} {kind} pattern for the {generator} generator")
    tr = s["train"]
    solved = generate(generator, _target(plan), budget, pattern=pattern, by=s["by"], sparse=kind == "sparsity",
                      depth=kind == "depth",
                      floor=float(tr["floor"]), round_to=int(tr["round"]), seed=seed,
                      target_name=s["target"])
    solved.spec.meta["generator"] = generator
    return solved.spec


def search_arch(plan: dict, ratios: list[float]) -> ArchSpec:
    s, tr = plan["spec"], plan["spec"]["train"]
    solved = channel_spec(_target(plan), ratios, plan["budgets"][0], by=s["by"], floor=float(tr["floor"]),
                          round_to=int(tr["round"]),
                          meta={"origin": "search", "stage_values": [round(r, 4) for r in ratios],
                                "target": s["target"], "budget": plan["budgets"][0], "by": s["by"]})
    return solved.spec


def build_plan(spec: SweepSpec, workdir: Path, *, device: str = "auto", data_dir: str | None = None,
               log: Log = _stderr, artifacts: str | None = None) -> dict:
    """Resolve patterns (extracting where asked), budgets and kinds; check every grid point
    builds. A table's plan holds its resolved rows and its artifact store instead."""
    data_dir = data_dir or spec.train.get("data_dir")
    if data_dir is not None and spec.path and not Path(data_dir).is_absolute() and not Path(data_dir).exists():
        cand = Path(spec.path).parent / data_dir
        data_dir = str(cand) if cand.exists() else data_dir
    if spec.mode == "table":
        return {"version": PLAN_VERSION, "spec": spec.to_dict(), "filled": spec.filled,
                "patterns": {"own": {}, "transferred": {}},
                "kinds": [], "budgets": [], "full": {},
                "data_dir": str(Path(data_dir).resolve()) if data_dir and Path(data_dir).exists() else data_dir,
                "archsearch_version": __version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **build_table_plan(spec, workdir, data_dir, artifacts)}
    patterns: dict[str, dict[str, dict]] = {"own": {}, "transferred": {}}
    tgt = parse_target(spec.target)
    for role in ("own", "transferred"):
        for src in spec.patterns.get(role, []):
            pat = _resolve_pattern(src, role, spec, workdir, device, data_dir, log)
            if pat["kind"] in patterns[role]:
                raise ArchsearchError(f"patterns.{role} has two {pat['kind']} patterns "
                                      f"({patterns[role][pat['kind']]['name']} and {pat['name']})")
            same = pat["arch"] == tgt.spec_name and pat["data"] == tgt.data
            if role == "own" and not same:
                raise ArchsearchError(f"patterns.own lists {pat['name']} ({pat['arch']}-{pat['data']}), but the "
                                      f"target is {spec.target}: put patterns from elsewhere under patterns.transferred")
            patterns[role][pat["kind"]] = pat
    kinds = spec.kinds or sorted({k for r in patterns.values() for k in r}, key=["channels", "sparsity", "depth"].index)
    plan = {"version": PLAN_VERSION, "spec": spec.to_dict(), "filled": spec.filled, "patterns": patterns, "kinds": kinds,
            "data_dir": str(Path(data_dir).resolve()) if data_dir and Path(data_dir).exists() else data_dir,
            "archsearch_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    full = count(_target(plan))
    plan["full"] = {"params": full.params, "macs": full.macs}
    plan["budgets"] = [float(round(b)) for b in spec.budget_values(full.params if spec.by == "params" else full.macs)]
    if spec.mode == "grid":
        for kind in kinds:
            for g in spec.generators:
                for b in plan["budgets"]:
                    try:
                        arch_for(plan, kind, g, b, 0)
                    except ArchsearchError as e:
                        raise ArchsearchError(f"{g} ({kind}) at {budget_tag(b)} {spec.by}: {e}") from None
    else:
        pat = next(iter(patterns["own"].values()), None) or next(iter(patterns["transferred"].values()))
        if pat["kind"] != "channels":
            raise ArchsearchError("search mode searches channel widths: its pattern must be a channels pattern")
        vals, _, _ = pattern_stage_values(pat, _target(plan))
        plan["search_start"] = vals
        plan["search_pattern"] = pat["name"]
        search_arch(plan, vals)
    return plan


def read_plan(plan, where: str) -> dict:
    """The one reader of a stored plan. A plan read from a storage is data from another
    machine: check all of it (its schema, its sweep spec, every pattern in it) before a worker
    acts on it, and return it with its spec re-read through the spec schema, so that every
    default is the schema's. Version 1 plans (their specs held only what the file said) are
    upgraded the same way; a newer version is refused in one line."""
    if not isinstance(plan, dict) or not isinstance(plan.get("spec"), dict):
        raise ArchsearchError(f"{where}: not a sweep plan")
    version = plan.get("version")
    if isinstance(version, int) and version > PLAN_VERSION:
        raise ArchsearchError(f"{where}: plan version {version} was written by a newer archsearch (this one reads "
                              f"up to {PLAN_VERSION}); upgrade archsearch on this machine")
    if version in (1, 2):  # (a version 2 spec holds every setting: the old defaults change nothing in it)
        plan = {**plan, "version": PLAN_VERSION, "filled": []}
    check(PlanModel, plan, where)
    raw = {k: v for k, v in plan["spec"].items() if k != "scale" and v is not None}
    spec = parse_spec(raw, path=f"{where}: spec", legacy=version in (1, 2))
    spec.scale = plan["spec"].get("scale")
    for role, pats in plan["patterns"].items():
        for kind, pat in pats.items():
            P.validate(pat, f"{where}: pattern {role} {kind}")
    return {**plan, "spec": spec.to_dict()}


DESCRIPTIVE = ("title", "about", "cost")  # a spec's prose: rewording it does not make another sweep


def _as_legacy(plan: dict) -> dict:
    """`plan` as archsearch before plan version 3 would have made it from the same spec file:
    the settings the file left out take that release's defaults (`LEGACY_DEFAULTS`), so that a
    study it began is recognised as the same sweep (and goes on with its stored plan)."""
    spec = copy.deepcopy(plan["spec"])
    for k in plan.get("filled", []):
        sec, key = k.split(".")
        spec[sec][key] = LEGACY_DEFAULTS[k]
    return {**plan, "spec": spec}


def _comparable(plan: dict) -> dict:
    spec = {k: v for k, v in plan["spec"].items() if k not in DESCRIPTIVE}
    return {"spec": spec, **{k: plan.get(k) for k in ("kinds", "budgets", "rows")}}


# -- studies ----------------------------------------------------------------------------------------
class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, without its `study.stop()` after the last point: workers here
    drive trials with ask/tell and decide themselves when the grid is done."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def _sampler_pruner(plan: dict):
    s = plan["spec"]
    if s["mode"] == "grid":
        return _GridSampler(grid_space(plan), seed=0), optuna.pruners.NopPruner()
    if s["mode"] == "table":  # every trial is queued with its point: the sampler never draws
        return optuna.samplers.RandomSampler(seed=0), optuna.pruners.NopPruner()
    se = s["search"]
    sampler = optuna.samplers.TPESampler(seed=int(se["sampler_seed"]), n_startup_trials=int(se["startup_trials"]))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=int(se["startup_trials"]),
                                          n_warmup_steps=int(se["warmup_epochs"]))
              if se["pruner"] == "median" else optuna.pruners.NopPruner())
    return sampler, pruner


def open_run_storage(storage: str, run_cfg: dict):
    """The storage a sweep runs on, opened (and so checked) before any work is done."""
    return open_storage(storage, heartbeat=run_cfg["heartbeat"], grace=run_cfg["grace"], max_retry=run_cfg["max_retry"])


def create_or_load(st, plan: dict, log: Log = _stderr) -> tuple[optuna.Study, dict]:
    """Create the study for `plan` in the opened storage `st`, or load it and check it is the
    same sweep. Returns (study, the plan in force): a resumed study keeps the plan it began
    with (its patterns, command and date), which its spawned workers read too, so that every
    trial of a study builds its nets from the same patterns."""
    name = study_name(plan)
    sampler, pruner = _sampler_pruner(plan)
    study = optuna.create_study(study_name=name, storage=st, sampler=sampler, pruner=pruner, direction="maximize",
                                load_if_exists=True)
    old = study.user_attrs.get(PLAN_ATTR)
    legacy = isinstance(old, dict) and old.get("version") in (1, 2)
    if old is not None:
        old = read_plan(old, f"the plan stored in study {name!r}")
    if old is None:
        study.set_user_attr(PLAN_ATTR, plan)
        if plan["spec"]["mode"] == "table" and not study.trials:
            enqueue_proposals(study, plan)
        if plan["spec"]["mode"] == "search" and not study.trials:
            study.enqueue_trial({f"stage{k}": v for k, v in enumerate(_clip_start(plan))},
                                user_attrs={"reference": f"pattern {plan['search_pattern']}"})
            if plan["spec"]["search"]["uniform_reference"]:
                study.enqueue_trial({f"stage{k}": 1.0 for k in range(len(plan["search_start"]))},
                                    user_attrs={"reference": "uniform"})
    elif _comparable(old) != _comparable(_as_legacy(plan) if legacy else plan):
        raise ArchsearchError(f"study {name} in this storage was made from another version of this spec; "
                              "restore the spec, or pass another --workdir/--storage to start a new study")
    else:
        def core(p: dict | None) -> dict | None:  # what builds nets; not when or by which command it was made
            return None if p is None else {k: v for k, v in p.items() if k != "provenance"}

        changed = sorted(f"{p['name']} ({role})" for role, d in plan["patterns"].items() for k, p in d.items()
                         if core(old["patterns"].get(role, {}).get(k)) != core(p))
        if changed:
            log(f"note: pattern {', '.join(changed)} changed since study {name} began; the study goes on with the "
                "patterns it began with (pass another --workdir/--storage to start one with the new)")
        return study, old
    return study, plan


def _clip_start(plan: dict) -> list[float]:
    se = plan["spec"]["search"]
    lo, hi = float(se["low"]), float(se["high"])
    return [min(hi, max(lo, v)) for v in plan["search_start"]]


def study_name(plan: dict) -> str:
    s = plan["spec"]
    return s["name"] + (f"-{s['scale']}" if s.get("scale") else "")


def load_study(storage: str, name: str) -> tuple[optuna.Study, dict]:
    """Load a sweep's study by name (for workers, status, reports). The storage is opened a
    second time with the sweep's own heartbeat settings once its plan has been read."""
    probe = open_storage(storage, create=False)
    try:
        study = optuna.load_study(study_name=name, storage=probe)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(probe)]
        raise ArchsearchError(f"no study {name!r} in {describe(storage)} (it has: {', '.join(names) or 'none'})") from None
    plan = study.user_attrs.get(PLAN_ATTR)
    if plan is None:
        raise ArchsearchError(f"study {name!r} was not made by `archsearch sweep run`")
    plan = read_plan(plan, f"the plan stored in study {name!r}")
    rc = run_cfg_of(SweepSpec.from_dict(plan["spec"]))
    st = open_storage(storage, heartbeat=rc["heartbeat"], grace=rc["grace"], max_retry=rc["max_retry"], create=False)
    sampler, pruner = _sampler_pruner(plan)
    return optuna.load_study(study_name=name, storage=st, sampler=sampler, pruner=pruner), plan


def run_cfg_of(spec: SweepSpec) -> dict:
    return {"heartbeat": spec.heartbeat, "grace": spec.grace, "max_retry": spec.max_retry}


__all__ = ["build_plan", "read_plan", "arch_for", "grid_point", "open_run_storage", "create_or_load", "load_study",
           "default_workdir", "run_cfg_of", "study_name", "PLAN_ATTR", "PLAN_VERSION"]
