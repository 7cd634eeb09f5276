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

import optuna

from .. import __version__
from .. import patterns as P
from ..commands import portable_command
from ..errors import ArchsearchError
from ..schemas import PlanModel, check
from .modes import get_mode
from .points import Log
from .spec import LEGACY_DEFAULTS, SweepSpec, parse_spec
from .storage import describe, open_storage

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


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the plan ---------------------------------------------------------------------------------------
def default_workdir(spec: SweepSpec) -> Path:
    return Path("runs") / "sweeps" / spec.study_name


def build_plan(spec: SweepSpec, workdir: Path, *, device: str = "auto", data_dir: str | None = None,
               log: Log = _stderr, artifacts: str | None = None) -> dict:
    """The study's plan: what every sweep records, and its mode's part (`modes.Mode.build`: the
    patterns, extracted where asked, with every grid point checked to build; a table's resolved
    rows and its artifact store)."""
    data_dir = data_dir or spec.train.get("data_dir")
    if data_dir is not None and spec.path and not Path(data_dir).is_absolute() and not Path(data_dir).exists():
        cand = Path(spec.path).parent / data_dir
        data_dir = str(cand) if cand.exists() else data_dir
    plan = {"version": PLAN_VERSION, "spec": spec.to_dict(), "filled": spec.filled,
            "data_dir": str(Path(data_dir).resolve()) if data_dir and Path(data_dir).exists() else data_dir,
            "archsearch_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return get_mode(spec.mode).build(spec, plan, workdir, device=device, data_dir=data_dir, log=log,
                                     artifacts=artifacts)


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


ADDED_LATER = ("latency",)  # spec settings older plans lack
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
    # a setting added later with its default (None) is what an older plan, which lacks it, meant
    spec = {k: v for k, v in plan["spec"].items() if k not in DESCRIPTIVE and not (k in ADDED_LATER and v is None)}
    return {"spec": spec, **{k: plan.get(k) for k in ("kinds", "budgets", "rows")}}


# -- studies ----------------------------------------------------------------------------------------
def _sampler_pruner(plan: dict):
    return get_mode(plan["spec"]["mode"]).sampler_pruner(plan)


def open_run_storage(storage: str, run_cfg: dict):
    """The storage a sweep runs on, opened (and so checked) before any work is done."""
    return open_storage(storage, heartbeat=run_cfg["heartbeat"], grace=run_cfg["grace"], max_retry=run_cfg["max_retry"])


def create_or_load(st, plan: dict, log: Log = _stderr) -> tuple[optuna.Study, dict]:
    """Create the study for `plan` in the opened storage `st`, or load it and check it is the
    same sweep. Returns (study, the plan in force): a resumed study keeps the plan it began
    with (its patterns, command and date), which its spawned workers read too, so that every
    trial of a study builds its nets from the same patterns."""
    name = study_name(plan)
    if plan.get("command"):  # a new study records its command with the work folder's paths
        plan = {**plan, "command": portable_command(plan["command"])}
    sampler, pruner = _sampler_pruner(plan)
    study = optuna.create_study(study_name=name, storage=st, sampler=sampler, pruner=pruner, direction="maximize",
                                load_if_exists=True)
    old = study.user_attrs.get(PLAN_ATTR)
    legacy = isinstance(old, dict) and old.get("version") in (1, 2)
    if old is not None:
        old = read_plan(old, f"the plan stored in study {name!r}")
    if old is None:
        study.set_user_attr(PLAN_ATTR, plan)
        if not study.trials:
            get_mode(plan["spec"]["mode"]).seed_study(study, plan)
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


__all__ = ["build_plan", "read_plan", "open_run_storage", "create_or_load", "load_study",
           "default_workdir", "run_cfg_of", "study_name", "PLAN_ATTR", "PLAN_VERSION"]
