"""Run sweeps as Optuna studies: prepare the plan, work through trials, run N workers.

One study per spec (and scale). `prepare` resolves the patterns (extracting the ones the
spec asks for), checks that every architecture of the grid can be built at its budget,
and stores the whole plan in the study's user attributes, so that a worker on another
machine needs nothing but the storage URL and the study name.

A worker loop asks the study for the next trial, trains it from scratch (resumable, in
its own run directory) under a heartbeat, and tells the outcome:
- COMPLETE with best/final accuracy, params, MACs, time and the architecture as attributes;
- FAIL with `fail_reason` for a diverged run (NaN) or a budget that cannot be met: the
  sweep goes on and does not retry it (the same seed would fail the same way);
- FAIL, kept retryable, for a failure outside the trial (disk full, out of memory, a lost
  device): the worker stops at once (one line, exit 2) and the next `sweep run` requeues
  it; a bug fails its trial and stops the worker loudly (`classify_failure`);
- a worker killed mid-trial stops beating: the next worker that looks fails the trial and
  requeues it (`RetryHeartbeatStaleTrialCallback`), and the retry resumes from the run's
  last checkpoint;
- Ctrl-C fails the running trial as "interrupted" and requeues it at once.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from .. import __version__
from ..compare import budget_tag, stage_summary
from ..counting import count
from ..data.stream import DATA_WORKERS_ENV
from ..errors import ArchsearchError, EnvironmentFailure, clip
from ..generate import channel_spec, generate, get_generator, pattern_stage_values
from ..names import parse_target
from ..spec import ArchSpec
from .spec import SweepSpec
from .._io import make_dirs, os_error
from .storage import DUPLICATE_ATTR, HEARTBEAT_ATTR, STORAGE_ENV, WORKER_LOST, beating, default_storage, describe, \
    fail_stale, frozen, open_storage, trial_system_attrs

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Optuna warns that heartbeats are meant for Study.optimize; the worker loop here runs the
# same heartbeat thread and stale-trial check around ask/tell itself.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

PLAN_ATTR = "archsearch:plan"
REQUEUE_HISTORY = "requeue_history"  # system attr: the attempts a stop or a machine's failure requeued
RETRY_ATTR = "retryable"  # user attr of a failed trial: why it may be retried (ENVIRONMENT or BUG)
TRIAL_FAULT, ENVIRONMENT, BUG = "trial", "environment", "bug"
MACHINE_SIGNS = ("CUDA error", "out of memory", "device-side", "No space left")  # in a message: the machine failed
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
    from ..propose import get_proposer, parse

    try:
        return get_proposer(parse(source).method).kind
    except ArchsearchError:
        return None


def _resolve_pattern(source: str, role: str, spec: SweepSpec, workdir: Path, device: str, data_dir: str | None,
                     log: Log) -> dict:
    """A library name or file, or a proposer spec extracted in the sweep (per [extract]);
    `extract.in_sweep` makes the sweep extract its own patterns even when the library has one."""
    from .. import patterns as P

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
    from .. import patterns as P
    from ..data import load_dataset
    from ..progress import EpochProgress
    from ..propose import parse, propose

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
        from .table import build_table_plan

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
    from .. import patterns as P
    from ..schemas import PlanModel, check
    from .spec import parse_spec

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
    from .spec import LEGACY_DEFAULTS

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
            from .table import enqueue_proposals

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


# -- progress accounting ----------------------------------------------------------------------------
def _identity(t: FrozenTrial, mode: str):
    if mode == "grid":
        return t.system_attrs.get("grid_id")
    if mode == "table":
        return t.user_attrs.get("point")  # None: a trial asked for when nothing was queued (ignored)
    return t.system_attrs.get("failed_trial", t.number)


@dataclass
class Status:
    total: int
    done: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    remaining: int = 0
    blocked: int = 0  # table mode: arms whose row's proposal failed (they cannot run)
    mean_seconds: float | None = None
    failures: list[tuple[int, str]] = field(default_factory=list)
    failed_trials: list[FrozenTrial] = field(default_factory=list)  # the last attempt of each failed point
    running_trials: list[tuple[int, str]] = field(default_factory=list)  # (number, label)

    @property
    def retryable(self) -> int:
        """Failed for a reason outside the trial: the next `sweep run` retries them."""
        return sum(t.user_attrs.get(RETRY_ATTR) == ENVIRONMENT for t in self.failed_trials)

    @property
    def finished(self) -> bool:
        return self.remaining <= self.blocked and self.running == 0 and self.waiting == 0

    def eta_seconds(self, workers: int | None = None) -> float | None:
        if self.mean_seconds is None:
            return None
        w = max(1, workers or self.running or 1)
        return self.mean_seconds * (self.remaining + self.waiting + self.running * 0.5) / w

    def line(self, workers: int | None = None) -> str:
        from ..progress import fmt_seconds

        eta = self.eta_seconds(workers)
        return (f"{self.done + self.pruned}/{self.total} done"
                + (f" ({self.pruned} pruned)" if self.pruned else "")
                + f", {self.running} running, {self.failed} failed"
                + (f" ({self.retryable} to retry on the next run)" if self.retryable else "")
                + f", {self.remaining + self.waiting - self.blocked} to go"
                + (f", {self.blocked} blocked by a failed proposal" if self.blocked else "")
                + (f", about {fmt_seconds(eta)} left" if eta is not None and not self.finished else ""))


def status(study: optuna.Study, plan: dict) -> Status:
    mode = plan["spec"]["mode"]
    trials = study.get_trials(deepcopy=False)
    if mode == "table":
        from .table import total as table_total

        total = table_total(plan)
    else:
        total = (len(plan["kinds"]) * len(plan["spec"]["generators"]) * len(plan["budgets"]) * plan["spec"]["seeds"]
                 if mode == "grid" else int(plan["spec"]["search"]["trials"]))
    by_id: dict = {}
    for t in trials:
        ident = _identity(t, mode)
        if (ident is None and mode == "table") or DUPLICATE_ATTR in t.user_attrs:
            continue
        by_id.setdefault(ident, []).append(t)
    st = Status(total=total)
    durations = []
    for ident, ts in by_id.items():
        states = {t.state for t in ts}
        if TrialState.COMPLETE in states:
            st.done += 1
        elif TrialState.PRUNED in states:
            st.pruned += 1
        elif TrialState.RUNNING in states:
            st.running += 1
            t = next(t for t in ts if t.state == TrialState.RUNNING)
            st.running_trials.append((t.number, trial_label(t.params, mode)))
        elif TrialState.WAITING in states:
            st.waiting += 1
        else:
            st.failed += 1
            last = max(ts, key=lambda t: t.number)
            st.failed_trials.append(last)
            # every failure this code tells carries its reason; one without was failed by the
            # heartbeat check (`fail_stale_trials`) after its worker died, and is out of retries
            st.failures.append((last.number, last.user_attrs.get(
                "fail_reason", f"{WORKER_LOST}; retries used up")))
        for t in ts:
            if t.state == TrialState.COMPLETE and t.datetime_complete and t.datetime_start:
                durations.append((t.datetime_complete - t.datetime_start).total_seconds())
    st.remaining = max(0, total - len([i for i in by_id if i is not None]))
    if mode == "table":
        from .table import blocked

        failed = {t.user_attrs.get("point") for t in st.failed_trials}
        st.blocked = blocked(plan, failed, set(by_id))
    st.mean_seconds = sum(durations) / len(durations) if durations else None
    return st


def trial_label(params: dict, mode: str) -> str:
    if mode == "table" and params:
        from .table import trial_label as table_label

        return table_label(params)
    if mode == "grid" and params:
        return (f"{params.get('generator')} {params.get('kind')} {budget_tag(float(params.get('budget', 0)))} "
                f"seed {params.get('seed')}")
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


# -- failures --------------------------------------------------------------------------------------
def classify_failure(e: BaseException) -> tuple[str, str]:
    """(cause, one-line reason) of a failed trial.

    - the trial's own fault (a diverged run, a budget it cannot meet): the same seed fails
      the same way, so it is failed for good and the sweep goes on;
    - the machine's (a full or read-only disk, no memory, a lost device): not the trial's
      doing; the sweep stops at once instead of burning through the grid, and the next
      run of the same command retries the trial;
    - anything else is a bug in archsearch: recorded, the worker stops with a traceback and
      a non-zero exit; `sweep run --retry-failed` retries it once fixed.
    """
    import torch

    first = clip(e, 300)
    if isinstance(e, EnvironmentFailure):
        return ENVIRONMENT, f"{type(e).__name__}: {first}"
    if isinstance(e, ArchsearchError):
        return TRIAL_FAULT, f"{type(e).__name__}: {first}"
    if isinstance(e, (OSError, MemoryError, torch.OutOfMemoryError)) or (
            isinstance(e, RuntimeError) and any(k in str(e) for k in MACHINE_SIGNS)):
        return ENVIRONMENT, f"{type(e).__name__}: {first or getattr(e, 'strerror', '')}"
    return BUG, f"bug: {type(e).__name__}: {first}"


def requeue_failed(study: optuna.Study, plan: dict, *, everything: bool = False) -> list[int]:
    """Put failed points back in the queue: those that failed for a reason outside the trial
    (always), or every failed one (`everything`, i.e. `--retry-failed`), with the same params
    (a search trial too: it resumes in its run directory). Returns the numbers of the trials
    requeued. Pruned trials stay as they are."""
    out = []
    for t in status(study, plan).failed_trials:
        if everything or t.user_attrs.get(RETRY_ATTR) == ENVIRONMENT:
            _requeue(study, t, f"retry: {t.user_attrs.get('fail_reason', 'failed')}")
            out.append(t.number)
    return out


# -- one worker -------------------------------------------------------------------------------------
@dataclass
class WorkerContext:
    workdir: Path
    device: str = "auto"
    data_dir: str | None = None
    log: Log = _stderr
    epoch_progress: bool = True
    poll: float = 2.0
    artifacts: str | None = None  # table mode: the artifact store, where this machine reaches it
    _data: dict = field(default_factory=dict)

    def data(self, plan: dict, name: str | None = None):
        """The sweep's dataset (the target's; a table names one per row), loaded once."""
        name = name or parse_target(plan["spec"]["target"]).data
        if name not in self._data:
            from ..data import load_dataset, subset_train

            ds = load_dataset(name, self.data_dir or plan.get("data_dir"),
                              download=bool(plan["spec"]["train"]["download"]))
            self._data[name] = subset_train(ds, plan["spec"]["train"].get("train_subset"))
        return self._data[name]

    def all_data(self, plan: dict) -> None:
        """Load every dataset the sweep needs (a missing one stops the worker before any trial)."""
        for name in sorted({r["data"] for r in plan["rows"]}) if plan["spec"]["mode"] == "table" else [None]:
            self.data(plan, name)


class _Interrupted(Exception):
    pass


def _next_action(study: optuna.Study, plan: dict) -> str:
    if plan["spec"]["mode"] == "table":
        from .table import enqueue_ready

        enqueue_ready(study, plan)
    st = status(study, plan)
    if st.waiting or (st.remaining and plan["spec"]["mode"] != "table"):
        return "ask"
    if st.running:
        return "wait"
    return "done"


def _is_duplicate(study: optuna.Study, trial: optuna.Trial, mode: str) -> int | None:
    if mode == "table":
        key, gid = "point", trial.user_attrs.get("point")
        ident = lambda t: t.user_attrs.get(key)  # noqa: E731
    else:
        gid = trial_system_attrs(study, trial).get("grid_id")
        ident = lambda t: t.system_attrs.get("grid_id")  # noqa: E731
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE)):
        if t.number != trial.number and ident(t) == gid and (
                t.state == TrialState.COMPLETE or t.number < trial.number):
            return t.number
    return None


def _requeue(study: optuna.Study, trial: FrozenTrial, reason: str) -> None:
    sa = {k: v for k, v in trial.system_attrs.items() if k != HEARTBEAT_ATTR}
    sa.setdefault("failed_trial", trial.number)
    # not Optuna's retry_history: that one counts lost workers against max_retry, and a stop
    # (Ctrl-C, a machine's failure) is no lost worker
    sa[REQUEUE_HISTORY] = list(sa.get(REQUEUE_HISTORY, [])) + [trial.number]
    sa["requeued_because"] = reason
    study.add_trial(optuna.create_trial(state=TrialState.WAITING, params=trial.params,
                                        distributions=trial.distributions,
                                        user_attrs={k: v for k, v in trial.user_attrs.items()
                                                    if k not in ("fail_reason", RETRY_ATTR)},
                                        system_attrs=sa))


def _train_trial(study: optuna.Study, trial: optuna.Trial, plan: dict, ctx: WorkerContext, label: str) -> float:
    from ..progress import EpochProgress
    from ..train import make_schedule, train

    s, tr = plan["spec"], plan["spec"]["train"]
    mode = s["mode"]
    if mode == "table":
        from .table import run_trial

        return run_trial(study, trial, plan, ctx, label)
    if mode == "grid":
        kind, gen, budget, seed = grid_point(trial, plan)
        arch = arch_for(plan, kind, gen, float(budget), int(seed))
        run = ctx.workdir / "trials" / kind / f"{gen}-{budget_tag(float(budget))}-s{seed}"
    else:
        se = s["search"]
        lo, hi = float(se["low"]), float(se["high"])
        ratios = [trial.suggest_float(f"stage{k}", lo, hi) for k in range(len(plan["search_start"]))]
        kind, gen, budget, seed = "channels", "search", plan["budgets"][0], int(se["seed"])
        arch = search_arch(plan, ratios)
        # a retry resumes in its first attempt's directory: the point's identity, as status counts it
        run = ctx.workdir / "trials" / "search" / f"trial{_identity(frozen(study, trial), mode):04d}"
    c = count(arch)
    trial.set_user_attr("generator", gen)
    trial.set_user_attr("kind", kind)
    trial.set_user_attr("budget", float(budget))
    trial.set_user_attr("seed", int(seed))
    trial.set_user_attr("params", c.params_nonzero)
    trial.set_user_attr("macs", c.macs_nonzero)
    trial.set_user_attr("widths", list(arch.widths))
    trial.set_user_attr("stages", stage_summary(arch))
    trial.set_user_attr("run_dir", str(run))
    sched = make_schedule(tr["preset"], s["schedule"], epochs=tr["epochs"], spec=arch,
                          base=_target(plan), cap=tr.get("cap"), count_convention=tr.get("count"))
    trial.set_user_attr("epochs", sched.epochs)
    bar = EpochProgress(f"{label} {trial_label(trial.params, mode)}") if ctx.epoch_progress else None
    is_reference = "reference" in trial.user_attrs

    def hook(st) -> None:
        if bar is not None:
            bar(st)
        if mode == "search":
            trial.report(100 * st.test_acc, st.epoch - 1)
            # the pattern and uniform reference trials always run to the end: they are the comparison
            if not is_reference and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {st.epoch} ({100 * st.test_acc:.2f}%)")

    if int(tr.get("nproc", 1)) > 1:  # one network over several processes: the train command under torchrun
        r = train_processes(plan, arch, kind=s["schedule"], seed=int(seed), run=run, ctx=ctx)
        if mode == "search":  # reported after the fact: a multi-process trial is not pruned early
            for h in r.history:
                trial.report(100 * h["test_acc"], h["epoch"] - 1)
    else:
        data = ctx.data(plan)
        r = train(arch, data, sched, seed=int(seed), device=ctx.device, out_dir=run,
                  checkpoint_every=int(tr["checkpoint_every"]), progress=hook)
    for k, v in (("best_acc", 100 * r.best_acc), ("final_acc", 100 * r.final_acc), ("best_epoch", r.best_epoch),
                 ("train_seconds", r.train_seconds), ("device", r.device_name), ("torch_version", r.torch_version),
                 ("archsearch_version", r.archsearch_version)):
        trial.set_user_attr(k, v)
    return 100 * r.best_acc


def train_processes(plan: dict, arch: ArchSpec, *, kind: str, seed: int, run: Path, ctx: WorkerContext):
    """Train one trial's network over `train.nproc` processes: `archsearch train --spec ...
    --nproc N` in a subprocess (torchrun, DistributedDataParallel). A worker on `cuda:K` gives it
    the N GPUs from its K-th visible one on (CUDA_VISIBLE_DEVICES); any other worker, the GPUs
    it sees. Its result is read back; its first error line becomes the trial's."""
    from ..train import load_result

    tr = plan["spec"]["train"]
    device, env = ctx.device, None
    if device.startswith("cuda:"):
        device, env = "cuda", {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(gpu_group(ctx.device, int(tr["nproc"])))}
    run.mkdir(parents=True, exist_ok=True)
    arch.save(run / "trial-spec.json")
    cmd = [sys.executable, "-m", "archsearch", "train", plan["spec"]["target"], "--spec", str(run / "trial-spec.json"),
           "--schedule", kind, "--preset", tr["preset"], "--seed", str(seed), "--out", str(run),
           "--checkpoint-every", str(tr["checkpoint_every"]), "--nproc", str(tr["nproc"]), "--device", device]
    if kind == "scratch-b":
        _target(plan).save(run / "trial-base.json")
        cmd += ["--base", str(run / "trial-base.json")]
    for opt, key in (("--epochs", "epochs"), ("--cap", "cap"), ("--count", "count"), ("--train-subset", "train_subset")):
        if tr.get(key) is not None:
            cmd += [opt, str(tr[key])]
    data_dir = ctx.data_dir or plan.get("data_dir")
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    if not tr["download"]:
        cmd.append("--no-download")
    proc = run_as_group(cmd, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
        why = lines[0][len("error:"):].strip() if lines else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"the {tr['nproc']}-process training of {run} failed: {clip(why, 300)}"
        # killed (a signal: the OOM killer, a lost peer's teardown), or a failure of the machine
        # that the child told in its error line: not the trial's fault, so it is retried
        if proc.returncode < 0 or proc.returncode >= 128 or any(k in why for k in MACHINE_SIGNS):
            raise EnvironmentFailure(msg)
        raise ArchsearchError(msg)
    return load_result(run / "result.json")


def gpu_group(device: str, n: int) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entries of the `n` GPUs from `cuda:K` on, counted among the GPUs
    this process sees (its own CUDA_VISIBLE_DEVICES, or all of them)."""
    import torch

    k = int(device.split(":", 1)[1])
    seen = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    seen = seen or [str(i) for i in range(torch.cuda.device_count())]
    if k + n > len(seen):
        raise ArchsearchError(f"a {n}-process trial on {device} needs GPUs {k}..{k + n - 1}, and this worker sees "
                              f"{len(seen)}; give the workers devices {n} apart (--devices 0,{n},...)")
    return seen[k:k + n]


def run_as_group(cmd: list[str], grace: float = 30.0, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `cmd` (stderr captured) in its own process group. If this process is stopped meanwhile
    (Ctrl-C, SIGTERM), the whole group is stopped: SIGTERM, then SIGKILL after `grace` seconds,
    so that no training process it started (a rank) runs on holding its run folder."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    try:
        _, err = proc.communicate()
    except BaseException:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, None, err)


def work(study: optuna.Study, plan: dict, ctx: WorkerContext, *, max_trials: int | None = None,
         wait: bool = True) -> int:
    """Run trials until the sweep is finished (or `max_trials`). Returns trials this worker ran.

    Ctrl-C: the running trial is failed as interrupted and requeued, then `_Interrupted`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        return _work(study, plan, ctx, max_trials, wait)


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM back while the block writes a trial's state to the storage (an
    ask, a tell and its requeue), so that a stop lands before or after the write, never inside
    it: a trial is never left RUNNING by a worker that was asked to stop. A signal that came
    meanwhile goes to the handler that was in place (KeyboardInterrupt, as a rule) when the block
    ends. Python runs signal handlers in the main thread only; elsewhere this holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            h = old[got[0]]
            if callable(h):
                h(got[0], None)
            elif h == signal.SIG_DFL:
                os.kill(os.getpid(), got[0])


def _fail_interrupted(study: optuna.Study, trial: optuna.Trial, plan: dict, reason: str) -> None:
    """Fail a trial a stop interrupted and requeue its point, as one write (`_signals_deferred`).
    A grid trial stopped before all its params were drawn gets them first, so that reports
    can name its point."""
    with _signals_deferred():
        if plan["spec"]["mode"] == "grid":
            grid_point(trial, plan)
        trial.set_user_attr("fail_reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        _requeue(study, frozen(study, trial), "interrupted")


def _work(study: optuna.Study, plan: dict, ctx: WorkerContext, max_trials: int | None, wait: bool) -> int:
    mode = plan["spec"]["mode"]
    ran = 0
    if _next_action(study, plan) != "done":
        # before taking any trial: missing data is the worker's error (one line, exit 2),
        # not every trial's, which would fail the whole grid for good
        ctx.all_data(plan)
    while max_trials is None or ran < max_trials:
        fail_stale(study)
        action = _next_action(study, plan)
        if action == "done":
            break
        if action == "wait":
            if not wait:
                break
            time.sleep(ctx.poll)
            continue
        trial = None
        try:  # a stop between the ask and the training must not leave the trial RUNNING
            with _signals_deferred():  # a stop inside the ask: raised once the trial is known
                trial = study.ask()
            if mode == "table" and "point" not in trial.user_attrs:
                # the queue emptied between the look and the ask (another worker took it): not a point
                study.tell(trial, state=TrialState.FAIL)
                continue
            if mode in ("grid", "table"):
                dup = _is_duplicate(study, trial, mode)
                if dup is not None:
                    trial.set_user_attr(DUPLICATE_ATTR, dup)  # not an attempt: status and reports skip it
                    trial.set_user_attr("fail_reason", f"duplicate of trial {dup} (two workers asked at once)")
                    study.tell(trial, state=TrialState.FAIL)
                    continue
            st = status(study, plan)
            label = f"[{st.done + st.pruned + st.failed + 1}/{st.total}] #{trial.number}"
        except KeyboardInterrupt:
            if trial is None:
                raise _Interrupted("interrupted") from None
            _fail_interrupted(study, trial, plan, "interrupted (Ctrl-C) before it started; requeued")
            raise _Interrupted(f"trial #{trial.number} interrupted before it started, and requeued") from None
        state, value, reason = TrialState.COMPLETE, None, None
        stop: BaseException | None = None
        with beating(study, trial):
            try:
                value = _train_trial(study, trial, plan, ctx, label)
            except optuna.TrialPruned as e:
                state, reason = TrialState.PRUNED, str(e)
            except KeyboardInterrupt:
                state, reason = TrialState.FAIL, "interrupted (Ctrl-C); requeued"
            except Exception as e:  # noqa: BLE001  sorted into the trial's fault, the machine's, or a bug
                state, (cause, reason) = TrialState.FAIL, classify_failure(e)
                if cause != TRIAL_FAULT:
                    # the machine's fault or a bug: every later trial would fail the same way, so
                    # stop here; the trial stays retryable (a rerun, or `sweep run --retry-failed`)
                    trial.set_user_attr(RETRY_ATTR, cause)
                    stop = e
                    if cause == BUG:
                        ctx.log(traceback.format_exc())
        if reason and reason.startswith("interrupted"):
            _fail_interrupted(study, trial, plan, reason)
            raise _Interrupted(f"trial #{trial.number} interrupted and requeued")
        with _signals_deferred():  # the outcome is written whole (a stop comes after)
            if reason is not None:
                trial.set_user_attr("fail_reason", reason)
            if state == TrialState.PRUNED:
                study.tell(trial, state=TrialState.PRUNED)  # Optuna records the last reported accuracy
            else:
                study.tell(trial, value, state=state)
        ran += 1
        done = frozen(study, trial)
        if stop is not None:
            ctx.log(f"{label} {trial_label(done.params, mode)} -> failed: {reason}")
            if cause == ENVIRONMENT:
                raise EnvironmentFailure(f"sweep stopped at trial #{trial.number}: {reason}; it is kept for a "
                                         "retry: fix the cause and run the same command again") from None
            raise stop
        tail = (f"best {value:.2f}%" if state == TrialState.COMPLETE else f"{state.name.lower()}: {reason}")
        ctx.log(f"{label} {trial_label(done.params, mode)} -> {tail}; {status(study, plan).line()}")
    return ran


# -- running a sweep --------------------------------------------------------------------------------
AUTO_CPU_WORKERS = 8  # the most single-machine CPU workers `--workers auto` starts (each loads the data)
AUTO_WORKERS_PER_GPU = 4  # `--workers auto` on CUDA, for nets on small images (CIFAR, digits)
SMALL_IMAGES = 64  # the largest image side that counts as small


def spec_input_size(spec) -> int:
    """The largest image side among the networks a sweep spec trains (its target's, or its
    table rows' datasets)."""
    from ..names import parse_target, split_proposer

    targets = [parse_target(spec.target)] if spec.target else []
    targets += [split_proposer(row["from"])[1] for row in spec.rows or []]
    return max((t.input_size for t in targets), default=32)


def resolve_workers(workers: int | str, devices: str | None, device: str, input_size: int = 32,
                    nproc: int = 1) -> tuple[int, str | None]:
    """(workers, devices) for `--workers auto`:
    - on CPU, one single-thread worker per core, at most AUTO_CPU_WORKERS (on the 2-core box,
      2 workers of 1 thread ran 1.23x the trials per hour of 1 worker of 2 threads);
    - on CUDA, AUTO_WORKERS_PER_GPU workers on each visible GPU (device `auto`) or on the one
      GPU named, for nets on small images (side <= SMALL_IMAGES), with at least 2 CPU cores
      a worker: on one H200 the quickstart grid ran 1.13x the trials per hour of one worker
      (1.27x under MPS); one worker per GPU for larger images;
    - for trials that take `nproc` GPUs each (`train.nproc` > 1), one worker per group of
      `nproc` GPUs: worker i on cuda:(i * nproc), whose trials run on GPUs i*nproc .. +nproc-1
      (`train_processes`);
    - with `--devices`, one worker per listed device.
    Measurements: benchmarks/results/{sweep_throughput,gpu_sharing}.jsonl. An integer is taken
    as it is."""
    if workers != "auto":
        return int(workers), devices
    if devices:
        return max(1, len([d for d in devices.split(",") if d.strip()])), devices
    import torch

    from ..train import resolve_device

    dev = resolve_device(device)
    cores = os.cpu_count() or 1
    if dev.type == "cuda":
        n = torch.cuda.device_count() if device == "auto" else 1
        if nproc > 1:
            groups = n // nproc
            return (groups, ",".join(str(g * nproc) for g in range(groups))) if groups > 1 else (1, None)
        per = AUTO_WORKERS_PER_GPU if input_size <= SMALL_IMAGES else 1
        per = max(1, min(per, cores // (2 * n)))
        if n > 1:
            return n * per, ",".join(map(str, range(n)))  # worker i on GPU i mod n
        return per, None
    return max(1, min(AUTO_CPU_WORKERS, cores)), None


def _worker_devices(devices: str | None, workers: int, device: str) -> list[str]:
    if devices:
        ids = [d.strip() for d in devices.split(",") if d.strip()]
        if not ids:
            raise ArchsearchError("--devices must list device ids like 0,1")
        return [f"cuda:{ids[i % len(ids)]}" if ids[i % len(ids)].isdigit() else ids[i % len(ids)]
                for i in range(workers)]
    return [device] * workers


def spawn_workers(study: optuna.Study, plan: dict, storage: str, workdir: Path, n: int, devices: list[str],
                  threads: int | None, data_dir: str | None, log: Log = _stderr, poll: float = 2.0,
                  artifacts: str | None = None) -> int:
    """Start N `archsearch sweep worker` processes (own process groups, logs in workdir/logs),
    report progress from the storage until they exit. Returns how many exited badly."""
    logs = make_dirs(workdir / "logs")
    procs = []
    preexec = _stop_with_parent()
    for i in range(n):
        # the storage URL may hold a password: it goes through the environment, which only this
        # user can read (/proc/PID/environ), not the command line, which every user sees in `ps`
        cmd = [sys.executable, "-m", "archsearch", "sweep", "worker",
               "--study", study.study_name, "--workdir", str(workdir), "--device", devices[i], "--quiet"]
        if threads:
            cmd += ["--threads", str(threads)]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        if artifacts:
            cmd += ["--artifacts", artifacts]
        try:
            f = open(logs / f"worker-{i}.log", "ab")
            f.write(f"\n=== {_dt.datetime.now().isoformat(timespec='seconds')} {shlex.join(cmd)} "
                    f"(storage: {describe(storage)}, from ${STORAGE_ENV})\n".encode())
            f.flush()
        except OSError as e:
            raise os_error(e, logs / f"worker-{i}.log") from None
        env = {**os.environ, STORAGE_ENV: storage}
        # a streamed dataset's decoder processes: each worker gets its share of the cores, not
        # one per core each (N workers x 8 decoders on a 16-core machine)
        env.setdefault(DATA_WORKERS_ENV, str(max(0, (threads or 1) - 1)))
        procs.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                       preexec_fn=preexec), f))
    log(f"started {n} workers (logs: {logs}/worker-*.log)")
    last = ""
    try:
        while any(p.poll() is None for p, _ in procs):
            time.sleep(poll)
            line = status(study, plan).line(n)
            if line != last:
                log(f"[sweep] {line}")
                last = line
    except KeyboardInterrupt:
        log("interrupted: stopping the workers (their running trials are requeued) ...")
        for p, _ in procs:
            if p.poll() is None:  # SIGTERM: a worker started where SIGINT is ignored (nohup, &) still stops
                p.send_signal(signal.SIGTERM)
        for p, _ in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise _Interrupted("interrupted") from None
    finally:
        for _, f in procs:
            f.close()
    bad = [i for i, (p, _) in enumerate(procs) if p.returncode != 0]
    for i in bad:
        log(f"worker {i} exited with {procs[i][0].returncode}; see {logs}/worker-{i}.log")
    return len(bad)


def _stop_with_parent() -> Callable[[], None] | None:
    """For a spawned worker, run between fork and exec (Linux): SIGTERM when the `sweep run`
    that started it dies, even by SIGKILL, so that it requeues its trial and stops instead of
    running on as an orphan beside the workers of the next `sweep run`. prctl is looked up
    here, before the fork: the child of a process with threads (torch's) may only make the
    system call itself."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl, pr_set_pdeathsig, sigterm = ctypes.CDLL(None, use_errno=True).prctl, 1, int(signal.SIGTERM)
    return lambda: prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


__all__ = ["resolve_workers", "spec_input_size", "build_plan", "open_run_storage", "create_or_load", "load_study", "requeue_failed", "classify_failure", "work", "spawn_workers", "status", "Status", "arch_for",
           "WorkerContext", "default_workdir", "default_storage", "run_cfg_of", "study_name", "PLAN_ATTR"]
