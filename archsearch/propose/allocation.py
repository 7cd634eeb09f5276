"""Allocations: how scores become keep masks (Torch-Pruning's global / per-layer pruning).

- `global_threshold`: one threshold over every score of every layer; exactly
  round(ratio x total) items with the smallest scores go (ties by position). It is what
  lets a method choose per-layer widths (Network Slimming) or densities (magnitude, LAMP).
- `per_layer`: a predefined ratio per layer (Li et al.'s per-stage ratios with skip lists):
  each layer keeps its int(n x (1 - ratio)) highest-scoring items, as the original code does.
- `floor_channels` / `keep_one`: the guards that stop a global threshold from emptying a layer.
Block removal (SSS) allocates blocks, not channels, and lives with its method.
"""

from __future__ import annotations

import math

import torch

from ..errors import ArchsearchError


def global_threshold(scores: list[torch.Tensor], ratio: float) -> tuple[list[torch.Tensor], float]:
    """One global threshold over all `scores`: exactly round(ratio x total) entries with the
    smallest scores are pruned, ties broken by position (so the prune count is exact).
    Returns boolean keep masks shaped like `scores` and the threshold (the largest pruned
    score; 0 if nothing is pruned)."""
    flat = torch.cat([v.detach().flatten().float().cpu() for v in scores])
    n_prune = int(round(ratio * len(flat)))
    order = torch.argsort(flat, stable=True)
    keep = torch.ones(len(flat), dtype=torch.bool)
    keep[order[:n_prune]] = False
    threshold = float(flat[order[n_prune - 1]]) if n_prune > 0 else 0.0
    return [k.reshape(v.shape) for k, v in zip(keep.split([v.numel() for v in scores]), scores)], threshold


def top_k(score: torch.Tensor, k: int) -> torch.Tensor:
    """Keep mask of the k highest scores (ties: the earlier position wins)."""
    flat = score.detach().flatten().float().cpu()
    keep = torch.zeros(len(flat), dtype=torch.bool)
    keep[torch.argsort(-flat, stable=True)[:k]] = True
    return keep.reshape(score.shape)


def kept_count(n: int, ratio: float) -> int:
    """Items a layer of n keeps at a predefined prune ratio: the original's
    `num_keep = int(out_channels * (1 - prune_prob))`, and at least one."""
    return max(1, int(n * (1 - ratio)))


def per_layer(scores: list[torch.Tensor], ratios: list[float]) -> list[torch.Tensor]:
    """Each layer keeps its `kept_count` highest-scoring items."""
    if len(ratios) != len(scores):
        raise ArchsearchError(f"{len(ratios)} ratios for {len(scores)} layers")
    out = []
    for s, r in zip(scores, ratios):
        if not 0 <= r < 1:
            raise ArchsearchError(f"a per-layer prune ratio must be in [0, 1), got {r}")
        out.append(top_k(s, kept_count(s.numel(), r)))
    return out


def floor_channels(keeps: list[torch.Tensor], scores: list[torch.Tensor], floor: float) -> list[dict]:
    """In place: a layer left with fewer than max(1, ceil(floor x width)) channels keeps its
    highest-scoring ones instead. Returns the clamped layers."""
    clamped = []
    for i, (k, s) in enumerate(zip(keeps, scores)):
        need = max(1, math.ceil(floor * len(k)))
        if int(k.sum()) < need:
            clamped.append({"layer": i, "kept_by_threshold": int(k.sum()), "kept": need, "width": len(k)})
            k.copy_(top_k(s, need))
    return clamped


def keep_one(keeps: list[torch.Tensor], scores: list[torch.Tensor]) -> list[int]:
    """In place: a layer the threshold would empty keeps its highest-scoring weight (an empty
    layer makes the network's output constant). Returns those layers."""
    clamped = []
    for i, (k, s) in enumerate(zip(keeps, scores)):
        if not k.any():
            k.view(-1)[int(s.flatten().argmax())] = True
            clamped.append(i)
    return clamped


def allocated_ratio(base, layer_ratios: list[float]) -> float:
    """The share of channels that `per_layer` at `layer_ratios` prunes from `base`'s groups
    (known before any training: the kept counts depend on the widths alone)."""
    total = sum(base.widths)
    kept = sum(kept_count(w, r) for w, r in zip(base.widths, layer_ratios))
    return round(1 - kept / total, 6)


def predefined_ratios(base, method: str, default: float, ratio: float | None, stage_ratios: list[float] | None,
                      skip: list[str] | None) -> list[float]:
    """One prune ratio per channel group of `base`: `ratio` for all (the method's default if
    unset), or one per stage (`stage_ratios`); the groups named in `skip` keep every channel."""
    from ..archs import get_family

    groups = get_family(base.family).groups(base)
    if ratio is not None and stage_ratios is not None:
        raise ArchsearchError("give either --ratio or --stage-ratios, not both")
    if stage_ratios is not None:
        if len(stage_ratios) != base.num_stages:
            raise ArchsearchError(f"{base.name} has {base.num_stages} stages; --stage-ratios gave {len(stage_ratios)} "
                                  f"ratios ({', '.join(f'{r:g}' for r in stage_ratios)})")
        ratios = [float(stage_ratios[g.stage]) for g in groups]
    else:
        ratios = [default if ratio is None else float(ratio)] * len(groups)
    for r in ratios:
        if not 0 <= r < 1:
            raise ArchsearchError(f"{method} prune ratios must be in [0, 1), got {r:g}")
    names = [g.name for g in groups]
    for s in skip or []:
        if s not in names:
            raise ArchsearchError(f"--skip names {s!r}, which is not a channel group of {base.name} "
                                  f"(groups: {', '.join(names[:4])}, ... {names[-1]})")
    out = [0.0 if n in set(skip or []) else r for n, r in zip(names, ratios)]
    if not any(out):
        raise ArchsearchError("these ratios prune nothing: give a ratio above 0 for at least one group")
    return out
