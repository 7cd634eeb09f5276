"""Allocations: how scores become keep masks (Torch-Pruning's global / per-layer pruning).

- `global_threshold`: one threshold over every score of every layer; exactly
  round(ratio x total) items with the smallest scores go (ties by position). It is what
  lets a method choose per-layer widths (Network Slimming) or densities (magnitude, LAMP).
- `per_layer`: a predefined ratio per layer (Li et al.'s per-stage ratios with skip lists):
  each layer keeps its int(n x (1 - ratio)) highest-scoring items, as the original code does.
- `floor_channels` / `keep_one`: the guards that stop a global threshold from emptying a layer.

A method is *given* its allocation: an `Allocation` object (`Proposer.allocation`) that
`resolve_settings` asks which settings it decides (`resolve`: the ratio, per-layer ratios,
rounds) and that `prune` asks for keep masks (`keep`), instead of branching on the method:
`GlobalThreshold` (slimming, magnitude, LAMP), `PredefinedRatios` (l1norm, ThiNet,
regression; with the method's named variants and the groups it can prune), `OneRatio`
(SFP: every conv at one ratio), `Rounds` (the lottery: a global threshold over rounds) and
`BlockRemoval` (SSS: one threshold over the removable blocks). Each says what it does in a
few words (`about`), which a method's refusal of a foreign option quotes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import torch

from ..archs import get_family
from ..config import is_whole
from ..errors import ArchsearchError
from ..spec import ArchSpec


COUNT_RULES = ("round", "original")


def prune_count(total: int, ratio: float, rule: str = "round") -> int:
    """How many of `total` items a global threshold at `ratio` prunes. "round": round(ratio x
    total). "original": int(ratio x total) + 1, as the original code counts: `thre_index =
    int(total * percent); thre = y[thre_index]` over the sorted scores, then `gt(thre)` keeps
    only those above it, so the items at positions 0..thre_index go (Network Slimming's
    `vggprune.py`/`resprune.py`/`denseprune.py`, the Rethinking code's weight-level
    `cifar_prune.py`). VGG-16 at width 0.25 (1,056 channels) at 0.5 and 0.7: 529 and 740 (the
    "round" rule: 528 and 739). Without ties the two rules' pruned sets are nested."""
    if rule not in COUNT_RULES:
        raise ArchsearchError(f"unknown prune-count rule {rule!r}; known: {', '.join(COUNT_RULES)}")
    n = int(round(ratio * total)) if rule == "round" else int(ratio * total) + 1
    return max(0, min(total, n))


def global_threshold(scores: list[torch.Tensor], ratio: float, rule: str = "round",
                     n_prune: int | None = None) -> tuple[list[torch.Tensor], float]:
    """One global threshold over all `scores`: exactly `prune_count(total, ratio, rule)` entries
    (or `n_prune`, when given) with the smallest scores are pruned, ties broken by position (so
    the prune count is exact). Returns boolean keep masks shaped like `scores` and the threshold
    (the largest pruned score; 0 if nothing is pruned)."""
    flat = torch.cat([v.detach().flatten().float().cpu() for v in scores])
    n_prune = prune_count(len(flat), ratio, rule) if n_prune is None else max(0, min(len(flat), n_prune))
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


def predefined_ratios(base: ArchSpec, method: str, ratio: float, stage_ratios: tuple[float, ...] | None,
                      skip: tuple[str, ...] | None) -> list[float]:
    """One prune ratio per channel group of `base`: `ratio` for all, or one per stage
    (`stage_ratios`); the groups named in `skip` keep every channel."""
    groups = get_family(base.family).groups(base)
    if stage_ratios is not None:
        if len(stage_ratios) != base.num_stages:
            raise ArchsearchError(f"{base.name} has {base.num_stages} stages; --stage-ratios gave {len(stage_ratios)} "
                                  f"ratios ({', '.join(f'{r:g}' for r in stage_ratios)})")
        ratios = [float(stage_ratios[g.stage]) for g in groups]
    else:
        ratios = [float(ratio)] * len(groups)
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


# -- the allocation objects a method is given ------------------------------------------------
class Allocation:
    """How a method's scores become what it removes, and which settings that takes."""

    about: ClassVar[str] = ""  # what the method does, as a refusal of a foreign option says it

    def resolve(self, method: str, base: ArchSpec, opts: Any, given: set[str], epochs: int) -> dict[str, Any]:
        """The settings this allocation decides (`Settings` fields), from the method's options;
        `given` names the options set explicitly, `epochs` is the base schedule's."""
        return {"ratio": opts.ratio}


class GlobalThreshold(Allocation):
    """One threshold over every score of every layer, at `ratio` (the method picks the widths);
    `rule` counts what goes (`prune_count`): "original" for the methods whose original code
    counts int(ratio x total) + 1 (Network Slimming, magnitude pruning), recorded in the
    settings (so in the proposal's key); "round" for the others."""

    about = "prunes once by one global threshold"

    def __init__(self, rule: str = "round"):
        if rule not in COUNT_RULES:
            raise ArchsearchError(f"unknown prune-count rule {rule!r}; known: {', '.join(COUNT_RULES)}")
        self.rule = rule

    def resolve(self, method, base, opts, given, epochs):
        return {"ratio": opts.ratio, **({"count_rule": self.rule} if self.rule != "round" else {})}

    def keep(self, scores: list[torch.Tensor], settings: Any) -> tuple[list[torch.Tensor], float]:
        return self.at(scores, settings.ratio)

    def at(self, scores: list[torch.Tensor], ratio: float) -> tuple[list[torch.Tensor], float]:
        """Keep masks and the threshold at `ratio` (`global_threshold`, this allocation's rule)."""
        return global_threshold(scores, ratio, self.rule)


class OneRatio(Allocation):
    """Every layer at the same ratio, `count(n, ratio)` of its n items removed (SFP)."""

    about = "prunes once, every conv at one ratio"

    def __init__(self, count: Callable[[int, float], int]):
        self.count = count

    def keep(self, scores: list[torch.Tensor], settings: Any) -> tuple[list[torch.Tensor], None]:
        return [top_k(s, len(s) - self.count(len(s), settings.ratio)) for s in scores], None


class BlockRemoval(GlobalThreshold):
    """One threshold over the removable blocks' scores (SSS): the `ratio` share goes."""

    about = "removes blocks once by one global threshold"


class PredefinedRatios(Allocation):
    """A ratio fixed in advance per channel group: `ratio` for all, `stage_ratios` per stage,
    `skip` lists, or a method's named configuration (`variants(base, name)`); `restrict`
    zeroes the ratios of groups the method cannot prune (and refuses when none is left)."""

    about = "prunes once, at predefined per-layer ratios"

    def __init__(self, variants: Callable[[ArchSpec, str], list[float]] | None = None,
                 restrict: Callable[[str, ArchSpec, list[float]], list[float]] | None = None):
        self.variants, self.restrict = variants, restrict

    def layer_ratios(self, method: str, base: ArchSpec, opts: Any, given: set[str]) -> list[float]:
        if opts.variant is not None:
            if self.variants is None:
                raise ArchsearchError(f"{method} has no named variants (got {opts.variant!r})")
            if given & {"ratio", "stage_ratios", "skip"}:
                raise ArchsearchError(f"variant {opts.variant} fixes the ratios and the skip list; "
                                      "drop --ratio, --stage-ratios and --skip")
            return self.variants(base, opts.variant)
        if "ratio" in given and opts.stage_ratios is not None:
            raise ArchsearchError("give either --ratio or --stage-ratios, not both")
        ratios = predefined_ratios(base, method, opts.ratio, opts.stage_ratios, opts.skip)
        return ratios if self.restrict is None else self.restrict(method, base, ratios)

    def resolve(self, method, base, opts, given, epochs):
        ratios = self.layer_ratios(method, base, opts, given)
        return {"ratio": allocated_ratio(base, ratios), "layer_ratios": ratios}

    def keep(self, scores: list[torch.Tensor], settings: Any) -> tuple[list[torch.Tensor], None]:
        return per_layer(scores, settings.layer_ratios), None


class Rounds(Allocation):
    """A global threshold over the weights still alive, `ratio` of them per round, for
    `rounds` rounds, rewound to the initialisation or to epoch `rewind_epoch`. Each round
    prunes int(alive x ratio) + 1 more weights, as `cifar_prune_iterative.py` counts (the
    "original" rule, recorded in the settings)."""

    about = "prunes over rounds by one global threshold"

    def resolve(self, method, base, opts, given, epochs):
        rounds, k = opts.rounds, opts.rewind_epoch
        if not is_whole(rounds, 1, 100):
            raise ArchsearchError(f"{method} needs 1 to 100 rounds of pruning, got {rounds!r}")
        if k is not None and epochs < 2:
            # late resetting rewinds to the weights after an epoch before a round's last (Frankle et al. 2019)
            raise ArchsearchError(f"--rewind-epoch {k}: rounds of {epochs} epoch are too short for late resetting, "
                                  "which rewinds to an epoch before a round's last; train at least 2 epochs "
                                  "(--epochs) or leave --rewind-epoch out")
        if k is not None and not is_whole(k, 1, epochs - 1):
            raise ArchsearchError(f"--rewind-epoch must be an epoch from 1 to {epochs - 1}, before the last of a "
                                  f"round's {epochs} epochs, got {k!r}")
        return {"ratio": opts.ratio, "rounds": rounds, "rewind_epoch": k, "count_rule": "original"}
