"""Nets at a budget: scale per-group ratios, per-conv densities or kept blocks until params
(or MACs) match the budget, within a tolerance (1% by default).

One budget solver (`solve`) bisects the scale; `channel_spec`, `sparse_spec` and `depth_spec`
build the three kinds of net on it. Widths keep a floor (at least 1 channel and a settable
fraction of the target's width) and can be rounded to multiples of 8 before the match, so the
match still holds after rounding. A sparse net's params count its non-zero weights only.
The generators (`archsearch.generate`) say which values to scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .archs import get_family, spread
from .counting import check_mask_memory, count
from .errors import ArchsearchError
from .spec import ArchSpec

BY = ("params", "macs")

def conv_stages(spec: ArchSpec) -> int:
    """The stages sparse values spread over: the convs' (`spec.num_stages` counts the channel
    groups', which can hold one more: the ImageNet VGG-11's classifier groups, past its last conv)."""
    return max(c.stage for c in get_family(spec.family).convs(spec)) + 1


def _cost(spec: ArchSpec, by: str) -> int:
    c = count(spec)
    return c.params_nonzero if by == "params" else c.macs_nonzero


@dataclass
class Solved:
    spec: ArchSpec
    scale: float
    cost: int
    error: float  # (cost - budget) / budget


def solve(make: Callable[[float], ArchSpec], budget: float, by: str, lo: float, hi: float,
          tol: float = 0.01, moves: Callable[[ArchSpec], list[ArchSpec]] | None = None) -> Solved:
    """The one budget solver: bisect the scale s in [lo, hi] so that cost(make(s)) ~ budget.

    cost(make(s)) must be non-decreasing in s. Integer (or rounded) widths make it a step
    function, so the closer of the two bracketing specs is taken; if that misses `tol`,
    `moves(spec, start)` lists one-step variants of `spec` (`start`: the bisection's spec) and
    the best is taken greedily while it brings the cost closer to the budget.
    """
    if by not in BY:
        raise ArchsearchError(f"--by must be one of {', '.join(BY)}, got {by!r}")
    c_lo, c_hi = _cost(make(lo), by), _cost(make(hi), by)
    if budget < c_lo * (1 - tol):
        raise ArchsearchError(f"budget {budget:,.0f} {by} is below the smallest net this generator can make "
                              f"({c_lo:,} {by} with every layer at its floor)")
    if budget > c_hi * (1 + tol):
        raise ArchsearchError(f"budget {budget:,.0f} {by} is above the full target ({c_hi:,} {by})")
    for _ in range(60):
        mid = (lo + hi) / 2
        if _cost(make(mid), by) < budget:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9:
            break
    cands = [(abs(_cost(s, by) - budget), sc, s) for sc, s in ((lo, make(lo)), (hi, make(hi)))]
    _, scale, spec = min(cands, key=lambda t: t[0])
    cost, start = _cost(spec, by), spec
    while moves is not None and abs(cost - budget) / budget > tol:
        options = [(abs(_cost(m, by) - budget), i, m) for i, m in enumerate(moves(spec, start))]
        if not options:
            break
        gap, _, best = min(options, key=lambda t: (t[0], t[1]))
        if gap >= abs(cost - budget):
            break
        spec, cost = best, _cost(best, by)
    err = (cost - budget) / budget
    if abs(err) > tol:
        raise ArchsearchError(f"cannot match {budget:,.0f} {by} within {tol:.0%} (nearest: {cost:,}, "
                              f"{err:+.1%}); try another budget or rounding")
    return Solved(spec, scale, cost, err)


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


def channel_spec(target: ArchSpec, stage_ratios: list[float], budget: float, *, by: str = "params",
                 floor: float = 0.0, round_to: int = 1, tol: float = 0.01, meta: dict | None = None,
                 per_layer: bool = False, exact: bool = False) -> Solved:
    """Group widths = target widths x stage ratio x scale, the scale solved for the budget
    (`per_layer`: one ratio per channel group instead of per stage). A selection group never
    exceeds its stream (the target's own width caps every group).

    Groups that get the same ratio, target width and floor always keep one width, also in
    the solver's fix-up, which moves such a class as a whole (so a guided VGG keeps one width
    per stage). `exact` (uniform): one ratio for every group, and the fix-up may move a class
    at most one rounding step from round(target x ratio), so equal layers stay equal and no
    two ratios differ by more than a step: with few distinct widths (a ResNet's 16/32/64) one
    ratio alone jumps by several percent of the budget between steps."""
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
    return solve(make, budget, by, 0.0, hi * 1.01 + 1e-6, tol=tol, moves=moves)


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


def sparse_spec(target: ArchSpec, stage_density: list[float], stage_kernel_maps: list, budget: float, *,
                by: str = "params", seed: int = 0, tol: float = 0.01, meta: dict | None = None,
                per_layer: bool = False) -> Solved:
    """Per-stage density x scale (capped at 1) with masks from the stage kernel maps; the
    scale is solved on the expected non-zero count, then masks are sampled once
    (`per_layer`: one density and one kernel map per layer instead of per stage)."""
    convs = get_family(target.family).convs(target)
    stages = [c.stage for c in convs]
    n = conv_stages(target)
    d = np.asarray(_spread(stage_density, stages, n, per_layer, "densities", "convs"), dtype=float)
    if (d <= 0).any():
        raise ArchsearchError("stage densities must be positive")
    sizes = np.array([int(np.prod(c.shape)) for c in convs])
    hw = np.array([c.hw for c in convs])
    dense = count(target)
    other = (dense.params - sizes.sum()) if by == "params" else (dense.macs - (sizes * hw * hw).sum())
    per = sizes if by == "params" else sizes * hw * hw

    def kept(scale: float) -> np.ndarray:
        return np.round(np.minimum(1.0, d * scale) * sizes) / sizes

    def cost(scale: float) -> float:
        return other + float((np.round(kept(scale) * sizes) * (per / sizes)).sum())

    full = other + per.sum()
    if budget > full * (1 + tol):
        raise ArchsearchError(f"budget {budget:,.0f} {by} is above the full target ({full:,} {by})")
    min_cost = other + (per / sizes).sum()  # one weight per layer
    if budget < min_cost:
        raise ArchsearchError(f"budget {budget:,.0f} {by} is below the smallest sparse net ({min_cost:,.0f} {by}: "
                              "the classifier and BN layers alone)")
    lo, hi = 0.0, 1.0 / d.min()
    for _ in range(80):
        mid = (lo + hi) / 2
        if cost(mid) < budget:
            lo = mid
        else:
            hi = mid
    scale = hi if abs(cost(hi) - budget) <= abs(cost(lo) - budget) else lo
    dens = kept(scale)
    maps = [None if m is None else np.asarray(m, dtype=float)
            for m in _spread(stage_kernel_maps, stages, n, per_layer, "kernel maps", "convs")]
    masks = sample_masks(target, list(dens), maps, seed)
    spec = target.replace(masks=masks, base_widths=target.widths, meta=dict(meta or {}))
    c = _cost(spec, by)
    err = (c - budget) / budget
    if abs(err) > tol:
        raise ArchsearchError(f"cannot match {budget:,.0f} {by} within {tol:.0%} with sparsity (nearest {c:,})")
    return Solved(spec, scale, c, err)


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


def depth_spec(target: ArchSpec, values: list[float], budget: float, *, by: str = "params", per_block: bool = False,
               floor: float = 0.0, round_to: int = 1, tol: float = 0.01, meta: dict | None = None) -> Solved:
    """The depth pattern's blocks, then one uniform width solved to the budget: depth from the
    pattern, the rest of the budget spent evenly on width."""
    keep = kept_blocks_from(target, values, per_block)
    deep = target.replace(blocks=keep)
    most = _cost(deep, by)
    if budget > most * (1 + tol):
        raise ArchsearchError(f"budget {budget:,.0f} {by} is above the net with the pattern's {sum(keep)} of {len(keep)} "
                              f"blocks at full width ({most:,} {by})")
    m = dict(meta or {})
    m["blocks_kept"] = int(sum(keep))
    return channel_spec(deep, [1.0] * target.num_stages, budget, by=by, floor=floor, round_to=round_to, tol=tol,
                        meta=m, exact=True)
