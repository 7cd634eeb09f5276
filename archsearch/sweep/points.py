"""The points of grid and search sweeps: patterns resolved (or extracted in the sweep), the
target, and the one place a grid point or a searched width vector becomes an architecture.
Read by the modes (`modes.py`: each mode's `check_points` builds every point before the plan is written).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable

import optuna

from .. import patterns as P
from ..commands import portable_command
from ..config import TrainConfig
from ..config import resolve as resolve_config
from ..data import load_dataset
from ..errors import ArchsearchError
from .. import latency as lat
from ..budget import channel_spec
from ..latency import LatencyTable
from ..measures import Budget, LatencyMeasure, parse_budget
from ..generate import arm_generator, generate_checked, split_arm
from ..names import parse_target
from ..progress import EpochProgress
from ..propose import NAMED, get_proposer, parse, propose
from ..spec import ArchSpec

Log = Callable[[str], None]


def train_config(train: dict) -> TrainConfig:
    """A sweep's `[train]` table as the resolved config its points train under (the preset
    with the table's overrides; `sweep.spec` has already filled width and checkpointing)."""
    return resolve_config(train["preset"], epochs=train.get("epochs"), width=train["width"],
                          checkpoint_every=train["checkpoint_every"], scratch_b_cap=train.get("cap"),
                          count=train.get("count"))


def _proposer_kind(source: str) -> str | None:
    try:
        return get_proposer(parse(source).method).kind
    except ArchsearchError:
        return None


def resolve_pattern(source: str, role: str, spec, workdir: Path, device: str, data_dir: str | None,
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


def extract_in_sweep(source: str, spec, workdir: Path, device: str, data_dir: str | None,
                     log: Log) -> dict:
    ex = spec.extract
    path = workdir / "patterns" / f"{source}.json"
    kw = {k: ex[k] for k in (*NAMED, "options") if ex.get(k) is not None}  # the options models' names
    seeds = int(ex["seeds"])
    data = load_dataset(parse(source).target.data, data_dir)
    log(f"extract {source}: {seeds} seed(s), {kw} -> {path}")
    props = [propose(source, data, seed=s, workdir=workdir / "proposals", device=device,
                     progress=EpochProgress(f"propose {source} seed {s + 1}/{seeds}"), **kw) for s in range(seeds)]
    command = portable_command(shlex.join(["archsearch", "sweep", "run", str(spec.path)])
                               + (f" --scale {spec.scale}" if spec.scale else ""))
    pat = P.extract(props, name=source, command=command)
    P.save_pattern(pat, path)
    st = pat["stage"]
    log(f"extract {source}: {P.accuracy_line(pat)}; per-stage "
        f"{'ratio' if pat['kind'] == 'channels' else 'density'} "
        f"{[round(v, 3) for v in st.get('ratio_mean', st.get('density_mean', []))]}")
    return pat


def target_net(plan: dict) -> ArchSpec:
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


def plan_budget(plan: dict, budget: float | str) -> Budget:
    """A plan's budget as a `Budget`: a number bounds the spec's `by` (params or MACs, as every
    older plan has them), a text is a budget of its own (a latency, or several bounds)."""
    return parse_budget(budget) if isinstance(budget, str) else Budget(((plan["spec"]["by"], float(budget)),))


def latency_measure(plan: dict) -> LatencyMeasure:
    """The sweep's latency measure: its `[latency]` table, or the default measure."""
    return LatencyMeasure(**(plan["spec"].get("latency") or {}))


def plan_value(b: Budget, by: str) -> float | str:
    """How a plan keeps a budget: a number for one bound on the spec's `by` when that is params
    or MACs (as every older plan does, so their grids and run folders stay the same), else its
    text ("latency=1.5ms", "macs=4M" in a sweep by params)."""
    one = b.single
    return float(round(one[1])) if one and one[0] == by and by != "latency" else b.text()


def record_latency(trial: optuna.Trial, arch: ArchSpec, plan: dict) -> None:
    """The trained net's latency under the sweep's measure, as the trial's `latency` (seconds):
    measured by the worker after its training, so on a machine whose other cores may be busy
    with other trials (a latency-bound net's own bound was met on a quiet one, at plan time).
    A measure this worker cannot take (no CUDA here) is noted, not a failed trial."""
    try:
        trial.set_user_attr("latency", lat.measure_spec(arch, latency_measure(plan).check()))
    except ArchsearchError as e:
        trial.set_user_attr("latency_note", str(e))


def net_key(kind: str, generator: str, budget: float | str, seed: int) -> str:
    return f"{kind} {generator} {budget} {seed}"


def solve_point(plan: dict, kind: str, generator: str, budget: float | str, seed: int, table=None):
    """A grid point's net solved (`Solved`); a latency bound is estimated and checked end to end
    under the plan's measure (`table`, else this machine's table for `latency_measure(plan)`)."""
    s, tr = plan["spec"], plan["spec"]["train"]
    gen, named = split_arm(generator)
    role = arm_generator(generator).role
    pattern = arm_pattern(plan, role, kind, named) if role else None
    if role and pattern is None:
        raise ArchsearchError(f"no {role} {kind} pattern{f' named {named}' if named else ''} for the {gen} generator")
    b = plan_budget(plan, budget)
    if table is None and "latency" in b.measures:
        table = LatencyTable(latency_measure(plan))
    return generate_checked(gen, target_net(plan), b, table=table, pattern=pattern, sparse=kind == "sparsity",
                            depth=kind == "depth", floor=float(tr["floor"]), round_to=int(tr["round"]), seed=seed,
                            target_name=s["target"])


def arm_pattern(plan: dict, role: str, kind: str, named: str | None) -> dict | None:
    """The plan's `role` pattern of `kind` an arm reads: its kind's one, or the one it names."""
    pats = plan["patterns"][role]
    if named is None:
        return pats.get(kind)
    return next((p for p in pats.values() if p["kind"] == kind and p["name"] == named), None)


def arch_for(plan: dict, kind: str, generator: str, budget: float | str, seed: int) -> ArchSpec:
    """The one place a sweep turns a grid point into an architecture. A latency-bound net was
    solved and measured once, when the plan was made (`plan["nets"]`), so that every worker,
    on any machine and however busy, trains the same net."""
    fixed = (plan.get("nets") or {}).get(net_key(kind, generator, budget, seed))
    spec = ArchSpec.from_dict(fixed, "a net of the plan") if fixed else solve_point(plan, kind, generator, budget,
                                                                                     seed).spec
    spec.meta["generator"] = generator
    return spec


def search_arch(plan: dict, ratios: list[float]) -> ArchSpec:
    """A searched width vector at the plan's budget. A latency bound is solved on the table
    alone (this worker's, for this machine), without the end-to-end check of grid points."""
    s, tr = plan["spec"], plan["spec"]["train"]
    b = plan_budget(plan, plan["budgets"][0])
    table = LatencyTable(latency_measure(plan)) if "latency" in b.measures else None
    solved = channel_spec(target_net(plan), ratios, b, floor=float(tr["floor"]), round_to=int(tr["round"]),
                          meta={"origin": "search", "stage_values": [round(r, 4) for r in ratios],
                                "target": s["target"], "budget": plan["budgets"][0], "by": s["by"]}, table=table)
    return solved.spec



__all__ = ["train_config", "target_net", "arch_for", "latency_measure", "net_key", "plan_budget", "plan_value",
           "record_latency", "solve_point", "grid_point", "grid_space", "search_arch", "resolve_pattern",
           "extract_in_sweep"]
