"""Nets at a budget: scale per-group ratios, per-conv densities or kept blocks until params
(or MACs) match the budget, within a tolerance (1% by default).

One budget solver (`solve`) bisects the scale; `channel_spec`, `sparse_spec` and `depth_spec`
build the three kinds of net on it. Widths keep a floor (at least 1 channel and a settable
fraction of the target's width) and can be rounded to multiples of 8 before the match, so the
match still holds after rounding. A sparse net's params count its non-zero weights only.
The generators (`archsearch.generate`) say which values to scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .archs import get_family, spread
from .counting import check_mask_memory, count
from .errors import ArchsearchError
from . import latency
from .measures import MEASURES, Budget, LatencyMeasure, check_measure, fmt_value
from .spec import ArchSpec

BY = MEASURES  # what a budget may bound: params, macs, latency (`archsearch.measures`)


def conv_stages(spec: ArchSpec) -> int:
    """The stages sparse values spread over: the convs' (`spec.num_stages` counts the channel
    groups', which can hold one more: the ImageNet VGG-11's classifier groups, past its last conv)."""
    return max(c.stage for c in get_family(spec.family).convs(spec)) + 1


class Meter:
    """What `budget`'s measures cost, for nets narrowed from the target `full`: params and
    MACs counted (non-zero), latency from the per-layer table (`archsearch.latency`), made
    on first use with the default measure unless `table` is given."""

    def __init__(self, budget: Budget, full: ArchSpec, table=None):
        self.budget, self.full, self._table = budget, full, table

    @property
    def table(self):
        if self._table is None:
            self._table = latency.LatencyTable(LatencyMeasure())
        return self._table

    def costs(self, spec: ArchSpec) -> dict[str, float]:
        out: dict[str, float] = {}
        if "params" in self.budget.measures or "macs" in self.budget.measures:
            c = count(spec)
            out.update(params=c.params_nonzero, macs=c.macs_nonzero)
        if "latency" in self.budget.measures:
            out["latency"] = self.table.estimate(spec, self.full)
        return {m: out[m] for m in self.budget.measures}

    def ratio(self, spec: ArchSpec) -> tuple[float, str, dict[str, float]]:
        """(the largest cost / bound, the measure that gives it: the binding one, the costs)."""
        costs = self.costs(spec)
        binding = max(self.budget.measures, key=lambda m: costs[m] / self.budget.get(m))
        return costs[binding] / self.budget.get(binding), binding, costs


def full_cost(full: ArchSpec, by: str, measure: LatencyMeasure | None = None) -> float:
    """What `full` costs under `by`: its params or MACs (dense), or its latency measured end to
    end under `measure` (the base of budgets given as fractions)."""
    if by == "latency":
        return latency.measure_spec(full, measure or LatencyMeasure())
    c = count(full)
    return c.params if by == "params" else c.macs


def as_budget(budget: float | Budget, by: str) -> Budget:
    """A bare number is a bound on `by` (the callers of one measure, and older ones)."""
    if isinstance(budget, Budget):
        return budget
    check_measure(by)
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise ArchsearchError(f"budget must be a positive finite number, got {budget}")
    return Budget(((by, float(budget)),))


def shown(costs: dict[str, float]) -> str:
    return ", ".join(f"{fmt_value(m, v)} {m}" for m, v in costs.items())


@dataclass
class Solved:
    spec: ArchSpec
    scale: float
    cost: float            # the binding measure's cost (latency: the table's estimate, seconds)
    error: float           # (cost - bound) / bound on the binding measure
    binding: str = "params"
    costs: dict = field(default_factory=dict)  # every bounded measure's cost


def solve(make: Callable[[float], ArchSpec], meter: Meter, lo: float, hi: float, tol: float = 0.01,
          moves: Callable[[ArchSpec], list[ArchSpec]] | None = None) -> Solved:
    """The one budget solver: bisect the scale s in [lo, hi] so that the binding measure of
    make(s) meets its bound, every other under its own (the largest cost / bound ratio is 1).

    Every measure must be non-decreasing in s. Integer (or rounded) widths make it a step
    function, so the closer of the two bracketing specs is taken; if that misses `tol`,
    `moves(spec, start)` lists one-step variants of `spec` (`start`: the bisection's spec) and
    the best is taken greedily while it brings the ratio closer to 1.
    """
    budget = meter.budget
    r_lo, _, c_lo = meter.ratio(make(lo))
    r_hi, _, c_hi = meter.ratio(make(hi))
    if r_lo > 1 + tol:
        raise ArchsearchError(f"budget {budget.describe()} is below the smallest net this generator can make "
                              f"({shown(c_lo)} with every layer at its floor)")
    if r_hi < 1 - tol:
        raise ArchsearchError(f"budget {budget.describe()} is above the full target ({shown(c_hi)})")
    for _ in range(60):
        mid = (lo + hi) / 2
        if meter.ratio(make(mid))[0] < 1:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9:
            break
    gap = lambda sp: abs(meter.ratio(sp)[0] - 1)  # noqa: E731
    cands = [(gap(s), sc, s) for sc, s in ((lo, make(lo)), (hi, make(hi)))]
    _, scale, spec = min(cands, key=lambda t: t[0])
    best, start = gap(spec), spec
    while moves is not None and best > tol:
        options = [(gap(m), i, m) for i, m in enumerate(moves(spec, start))]
        if not options:
            break
        g, _, cand = min(options, key=lambda t: (t[0], t[1]))
        if g >= best:
            break
        spec, best = cand, g
    ratio, binding, costs = meter.ratio(spec)
    err = ratio - 1
    if abs(err) > tol:
        raise ArchsearchError(f"cannot match {budget.describe()} within {tol:.0%} (nearest: {shown(costs)}, "
                              f"{err:+.1%} on {binding}); try another budget or rounding")
    return Solved(spec, scale, costs[binding], err, binding, costs)


# -- channels ----------------------------------------------------------------------------------
def _round_width(w: float, floor: int, round_to: int) -> int:
    if round_to > 1:
        return max(floor, round_to * max(1, int(round(w / round_to))))
    return max(floor, int(round(w)))


def _spread(values: list, stages: list[int], n_stages: int, per_layer: bool, what: str, items: str) -> list:
    """Stage values spread over the items (channel groups or convs) of each stage, or per-item
    values checked as they are."""
    if per_layer:
        if len(values) != len(stages):
            raise ArchsearchError(f"{len(values)} per-layer {what} for a target with {len(stages)} {items}")
        return list(values)
    if len(values) != n_stages:
        raise ArchsearchError(f"{len(values)} stage {what} for a target with {n_stages} stages")
    return [values[s] for s in stages]


def _floors(widths: list[int], floor: float, round_to: int) -> list[int]:
    """The narrowest each group may get: at least 1 channel and `floor` of its target width.
    With rounding, floors round up to the multiple too (a layer narrower than one multiple
    keeps its floor), but never past the target's own width: a selection group cannot exceed
    its stream."""
    floors = [max(1, int(np.ceil(floor * w))) for w in widths]
    if round_to > 1:
        floors = [min(w, round_to * int(np.ceil(f / round_to))) if w >= round_to else f
                  for f, w in zip(floors, widths)]
    return floors


def tie_classes(keys: list) -> list[list[int]]:
    """Indices grouped by equal key, in first-seen order."""
    out: dict = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return list(out.values())


def channel_spec(target: ArchSpec, stage_ratios: list[float], budget: float | Budget, *, by: str = "params",
                 floor: float = 0.0, round_to: int = 1, tol: float = 0.01, meta: dict | None = None,
                 per_layer: bool = False, exact: bool = False, table=None) -> Solved:
    """Group widths = target widths x stage ratio x scale, the scale solved for the budget
    (`per_layer`: one ratio per channel group instead of per stage). A selection group never
    exceeds its stream (the target's own width caps every group).

    Groups that get the same ratio, target width and floor always keep one width, also in
    the solver's fix-up, which moves such a class as a whole (so a guided VGG keeps one width
    per stage). `exact` (uniform): one ratio for every group, and the fix-up may move a class
    at most one rounding step from round(target x ratio), so equal layers stay equal and no
    two ratios differ by more than a step: with few distinct widths (a ResNet's 16/32/64) one
    ratio alone jumps by several percent of the budget between steps. A number `budget` bounds
    `by`; `table`: the latency table a latency bound is estimated with."""
    meter = Meter(as_budget(budget, by), target, table)
    if round_to < 1:
        raise ArchsearchError(f"--round must be a positive multiple, got {round_to}")
    floors = _floors(target.widths, floor, round_to)
    r = np.asarray(_spread(stage_ratios, target.stages, target.num_stages, per_layer, "ratios", "channel groups"),
                   dtype=float)
    if (r <= 0).any():
        raise ArchsearchError("stage ratios must be positive")
    caps = list(target.widths)
    classes = tie_classes([(float(ri), t, f) for ri, t, f in zip(r, target.widths, floors)])

    def make(scale: float) -> ArchSpec:
        # a group whose scaled width reaches its target's keeps all of it, also where the target
        # is no multiple of round_to (rounding 9 to 8 would leave the full target out of reach)
        ws = [c if t * ri * scale >= c else min(c, _round_width(t * ri * scale, f, round_to))
              for t, ri, f, c in zip(target.widths, r, floors, caps)]
        return target.replace(widths=ws, base_widths=target.widths, masks=None, meta=dict(meta or {}))

    def step(ws: list[int], members: list[int], d: int, ref: list[int]) -> list[int] | None:
        nw = ws[members[0]] + d
        if not all(floors[i] <= nw <= caps[i] for i in members):
            return None
        if exact and abs(nw - ref[members[0]]) > round_to:
            return None
        ws = list(ws)
        for i in members:
            ws[i] = nw
        return ws

    def moves(spec: ArchSpec, start: ArchSpec) -> list[ArchSpec]:
        """One class one step up or down, or one class up and another down (a finer step in
        cost than either alone, which a small budget with --round 8 often needs)."""
        out = []
        for a, ma in enumerate(classes):
            for d in (round_to, -round_to):
                ws = step(spec.widths, ma, d, start.widths)
                if ws is None:
                    continue
                out.append(ws)
                for b, mb in enumerate(classes):
                    if b != a and (w2 := step(ws, mb, -d, start.widths)) is not None:
                        out.append(w2)
        return [spec.replace(widths=ws) for ws in out]

    hi = 1.0 / max(1e-9, float(r.min()))  # at this scale every layer reaches its full width
    return solve(make, meter, 0.0, hi * 1.01 + 1e-6, tol=tol, moves=moves)


# -- sparsity ----------------------------------------------------------------------------------
def position_probs(kernel_map, density: float) -> np.ndarray:
    """Per-position keep probabilities min(1, c x map), with c chosen so that their mean is
    `density`: the map's shape at the layer's density."""
    km = np.clip(np.asarray(kernel_map, dtype=float), 1e-6, None)
    density = min(1.0, max(0.0, density))
    lo, hi = 0.0, 1.0 / km.min()
    for _ in range(80):
        c = (lo + hi) / 2
        lo, hi = (c, hi) if np.minimum(1.0, c * km).mean() < density else (lo, c)
    return np.minimum(1.0, hi * km)


def _largest_remainder(x: np.ndarray, total: int) -> np.ndarray:
    base = np.floor(x).astype(int)
    rest = total - base.sum()
    if rest > 0:
        base[np.argsort(-(x - base), kind="stable")[:rest]] += 1
    elif rest < 0:
        base[np.argsort(x - base, kind="stable")[:-rest]] -= 1
    return base


def sample_masks(target: ArchSpec, densities: list[float], kernel_maps: list, seed: int) -> dict[str, np.ndarray]:
    """One mask per conv (keyed by its module name) with exactly round(density x size)
    weights kept, at least one. At each kernel position p, round(prob_p x n_kernels)
    kernels keep that weight, drawn uniformly with the seed, so the kept fraction per
    position is the scaled keep map itself (a 1x1 conv has one position: its density)."""
    check_mask_memory(target)  # before allocating a bool per weight
    rng = np.random.default_rng(seed)
    convs = get_family(target.family).convs(target)
    masks = {}
    for conv, d, km in zip(convs, densities, kernel_maps):
        shape = conv.shape
        n_kernels = int(np.prod(shape[:-2]))
        km = np.ones((conv.k, conv.k)) if km is None or np.shape(km) != (conv.k, conv.k) else km
        probs = position_probs(km, d).ravel()
        # at least one weight per layer: a layer with none cuts the network in two
        k = max(1, int(round(min(1.0, max(0.0, d)) * n_kernels * probs.size)))
        counts = np.clip(_largest_remainder(probs * n_kernels, k), 0, n_kernels)
        if counts.sum() < 1:
            counts[int(np.argmax(probs))] = 1
        keep = np.zeros((n_kernels, probs.size), dtype=bool)
        for pos, c in enumerate(counts):
            keep[rng.permutation(n_kernels)[:c], pos] = True
        masks[conv.name] = keep.reshape(shape)
    return masks


def fit_masks(masks: dict[str, np.ndarray], counts: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Given masks brought to `counts` kept weights per conv: a mask keeping more drops a
    random subset of its kept weights, one keeping fewer adds random weights from the rest
    (seeded); a mask already at its count is returned as it is."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, m in masks.items():
        m = np.asarray(m, dtype=bool)
        flat, want = m.ravel().copy(), int(counts[name])
        have = int(flat.sum())
        if want < have:
            flat[rng.permutation(np.flatnonzero(flat))[:have - want]] = False
        elif want > have:
            flat[rng.permutation(np.flatnonzero(~flat))[:want - have]] = True
        out[name] = flat.reshape(m.shape)
    return out


def sparse_spec(target: ArchSpec, stage_density: list[float], stage_kernel_maps: list, budget: float | Budget, *,
                by: str = "params", seed: int = 0, tol: float = 0.01, meta: dict | None = None,
                per_layer: bool = False, table=None, masks: dict[str, np.ndarray] | None = None) -> Solved:
    """Per-stage density x scale (capped at 1), solved on the expected non-zero counts, then
    masks sampled once from the stage kernel maps (`per_layer`: per layer); given `masks`
    (`reinit`), the solved counts are cut from them (`fit_masks`; at their own budget, them).
    A sparse net runs at its dense net's latency (zeros are multiplied like any weight), so a
    latency bound cannot shape it: alone it is refused, beside a count it is only checked."""
    budget = as_budget(budget, by)
    counts = {m: v for m, v in budget.bounds if m != "latency"}
    lat = _sparse_latency(target, budget, table, tol) if "latency" in budget.measures else None
    convs = get_family(target.family).convs(target)
    stages = [c.stage for c in convs]
    n = conv_stages(target)
    d = np.asarray(_spread(stage_density, stages, n, per_layer, "densities", "convs"), dtype=float)
    if (d <= 0).any():
        raise ArchsearchError("stage densities must be positive")
    sizes = np.array([int(np.prod(c.shape)) for c in convs])
    hw = np.array([c.hw for c in convs])
    dense = count(target)
    # per bounded count: what the convs do not hold, and each conv weight's share
    other = {"params": dense.params - sizes.sum(), "macs": dense.macs - (sizes * hw * hw).sum()}
    per = {"params": np.ones(len(sizes)), "macs": (hw * hw).astype(float)}

    def kept(scale: float) -> np.ndarray:
        return np.round(np.minimum(1.0, d * scale) * sizes)

    def ratio(scale: float) -> float:
        k = kept(scale)
        return max((other[m] + float((k * per[m]).sum())) / v for m, v in counts.items())

    top = {m: other[m] + float((sizes * per[m]).sum()) for m in counts}
    least = {m: other[m] + float(per[m].sum()) for m in counts}  # one weight per layer
    if all(top[m] < v * (1 - tol) for m, v in counts.items()):
        raise ArchsearchError(f"budget {budget.describe()} is above the full target ({shown(top)})")
    if any(least[m] > v for m, v in counts.items()):
        raise ArchsearchError(f"budget {budget.describe()} is below the smallest sparse net ({shown(least)}: "
                              "the classifier and BN layers alone)")
    lo, hi = 0.0, 1.0 / d.min()
    for _ in range(80):
        mid = (lo + hi) / 2
        if ratio(mid) < 1:
            lo = mid
        else:
            hi = mid
    scale = hi if abs(ratio(hi) - 1) <= abs(ratio(lo) - 1) else lo
    if masks is None:
        maps = [None if m is None else np.asarray(m, dtype=float)
                for m in _spread(stage_kernel_maps, stages, n, per_layer, "kernel maps", "convs")]
        masks = sample_masks(target, list(kept(scale) / sizes), maps, seed)
    else:
        masks = fit_masks(masks, {c.name: int(k) for c, k in zip(convs, kept(scale))}, seed)
    spec = target.replace(masks=masks, base_widths=target.widths, meta=dict(meta or {}))
    r, binding, costs = Meter(Budget(tuple(counts.items())), target).ratio(spec)
    if abs(r - 1) > tol:
        raise ArchsearchError(f"cannot match {budget.describe()} within {tol:.0%} with sparsity "
                              f"(nearest {shown(costs)})")
    if lat is not None:
        costs["latency"] = lat
    return Solved(spec, scale, costs[binding], r - 1, binding, costs)


def _sparse_latency(target: ArchSpec, budget: Budget, table, tol: float) -> float:
    """The dense target's latency (the table's), which every sparse net of it runs at: refused
    as a sparse net's only bound, and checked against the bound beside a count."""
    lat = Meter(Budget((("latency", budget.get("latency")),)), target, table).costs(target)["latency"]
    if len(budget.bounds) == 1:
        raise ArchsearchError(f"a sparse net runs at its dense net's latency here ({fmt_value('latency', lat)} "
                              "for this target): a latency budget cannot shape it; bound params or macs")
    if lat > budget.get("latency") * (1 + tol):
        raise ArchsearchError(f"budget {budget.describe()}: a sparse net runs at its dense net's latency here "
                              f"({fmt_value('latency', lat)}), above the latency bound")
    return lat


# -- depth -------------------------------------------------------------------------------------
def kept_blocks_from(target: ArchSpec, values: list[float], per_block: bool) -> list[bool]:
    """Block keep flags for `target`: per stage, round(share x removable blocks) of its
    removable blocks kept, spread evenly over the stage (`per_block`: one value per removable
    block, kept when >= 0.5). Blocks that cannot be removed always stay."""
    layout = get_family(target.family).block_layout(target.depth)
    if not layout:
        raise ArchsearchError(f"{target.name} has no residual blocks: a depth pattern does not apply to it")
    rem = [i for i, b in enumerate(layout) if b.removable]
    keep = [True] * len(layout)
    if per_block:
        if len(values) != len(rem):
            raise ArchsearchError(f"{len(values)} block values for {len(rem)} removable blocks of {target.name}")
        for i, v in zip(rem, values):
            keep[i] = v >= 0.5
        return keep
    for st in range(target.num_stages):
        idx = [i for i in rem if layout[i].stage == st]
        if not idx:
            continue
        share = float(values[st]) if st < len(values) else 1.0
        k = int(round(min(1.0, max(0.0, share)) * len(idx)))
        kept = set(spread(len(idx), k)) if k else set()
        for j, i in enumerate(idx):
            keep[i] = j in kept
    return keep


def depth_spec(target: ArchSpec, values: list[float], budget: float | Budget, *, by: str = "params",
               per_block: bool = False, floor: float = 0.0, round_to: int = 1, tol: float = 0.01,
               meta: dict | None = None, table=None) -> Solved:
    """The depth pattern's blocks, then one uniform width solved to the budget: depth from the
    pattern, the rest of the budget spent evenly on width."""
    keep = kept_blocks_from(target, values, per_block)
    deep = target.replace(blocks=keep)
    budget = as_budget(budget, by)
    r, _, most = Meter(budget, deep, table).ratio(deep)
    if r < 1 - tol:
        raise ArchsearchError(f"budget {budget.describe()} is above the net with the pattern's {sum(keep)} of "
                              f"{len(keep)} blocks at full width ({shown(most)})")
    m = dict(meta or {})
    m["blocks_kept"] = int(sum(keep))
    return channel_spec(deep, [1.0] * target.num_stages, budget, floor=floor, round_to=round_to, tol=tol,
                        meta=m, exact=True, table=table)


# -- latency, checked end to end -------------------------------------------------------------------
def verify_latency(make: Callable[[Budget], Solved], budget: Budget, table, tol: float = 0.05,
                   tries: int = 4) -> Solved:
    """`make(budget)` solved on the latency table's estimates, then the net measured end to end
    (`table.measure`); while the measured latency misses the bound by more than `tol` (or, where
    another measure binds, exceeds it), the latency bound the solver sees is scaled by
    bound / measured and the net solved again: the table's error at this net, corrected. The
    result records the measured latency (`costs["latency_measured"]`) beside the table's
    estimate (`costs["latency"]`); its `error` is the measured one."""
    bound, asked, best, seen = budget.get("latency"), budget, None, []
    for _ in range(tries):
        try:
            s = make(asked)
        except ArchsearchError as e:
            if best is None:
                raise
            raise ArchsearchError(f"cannot meet {budget.describe()} within {tol:.0%}: the measured latency "
                                  f"({fmt_value('latency', best.costs['latency_measured'])}) calls for a net "
                                  f"the solver cannot make ({e})") from None
        measured = latency.measure_spec(s.spec, table.measure)
        s.costs["latency_measured"] = measured
        seen.append(measured)
        err = measured / bound - 1
        s.error = err if s.binding == "latency" else s.error
        if s.binding == "latency":
            s.cost = measured
        if best is None or abs(measured / bound - 1) < abs(best.costs["latency_measured"] / bound - 1):
            best = s
        if (abs(err) <= tol) if s.binding == "latency" else (err <= tol):
            return s
        asked = asked.scaled("latency", bound / measured)
    got = best.costs["latency_measured"]
    under, over = [m for m in seen if m < bound], [m for m in seen if m > bound]
    why = (f"the nets on either side measured {fmt_value('latency', max(under))} and "
           f"{fmt_value('latency', min(over))}: this generator's widths step past the bound here; try "
           "another budget, or a finer --round" if under and over else
           "timing noise on a busy machine does this: measure on a quiet one, or refresh the table "
           "(archsearch profile --refresh)")
    raise ArchsearchError(f"cannot meet {budget.describe()} within {tol:.0%} as measured end to end: nearest "
                          f"{fmt_value('latency', got)} ({got / bound - 1:+.1%}) after {tries} tries (the table "
                          f"estimated {fmt_value('latency', best.costs['latency'])}); {why}")
