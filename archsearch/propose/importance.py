"""Importance criteria: how a method scores what it may remove (Torch-Pruning's `Importance`).

Two levels, each a list of score tensors in the family's own order:
- channel level, one 1-D tensor per channel group (`Family.groups`): `bn_scale` (Network
  Slimming's |gamma|), `filter_norm` (Li et al.'s L1 norm of each output filter, or L2);
- weight level, one tensor per conv (`Family.convs`), shaped like its weight: `magnitude`
  (|w|, Han et al.), `lamp` (Lee et al. 2021).
Larger means more important everywhere; an allocation (`allocation.py`) turns scores into
keep masks. Data-aware criteria (reconstruction error, LASSO coefficients) read activations
and live with their methods.
"""

from __future__ import annotations

import torch
from torch import nn

from ..archs import get_family
from ..errors import ArchsearchError
from ..spec import ArchSpec


def bn_scale(model: nn.Module, base: ArchSpec) -> list[torch.Tensor]:
    """|gamma| of each channel group's BN; a selection group reads the stream BN before it at
    the channels it selects (as `resprune.py` / `denseprune.py` rank them); a coupled group of
    a `tv.*` family (convs meeting in a residual add) the mean |gamma| over its BNs, as
    Torch-Pruning's `BNScaleImportance(group_reduction="mean", normalizer=None)`."""
    fam = get_family(base.family)
    modules = dict(model.named_modules())
    out = []
    for g in fam.groups(base):
        bns = fam.group_bns(base, g)
        if not bns or not all(b in modules and modules[b].weight is not None for b in bns):
            raise ArchsearchError(f"{base.name}: channel group {g.name} has no BatchNorm scale to rank it by")
        w = torch.stack([modules[b].weight.detach().abs().float().cpu() for b in bns]).mean(0)
        out.append(w[torch.as_tensor(fam.selection(base, g))] if g.kind == "select" else w)
    return out


def filter_norm(model: nn.Module, base: ArchSpec, p: int = 1) -> list[torch.Tensor]:
    """The Lp norm of each output filter of each channel group's conv (Li et al. 2017 rank
    by L1: `np.sum(|W|, axis=(1, 2, 3))` in `vggprune.py` / `res56prune.py`). A selection
    group has no filters of its own: methods that rank filters do not apply to it."""
    fam = get_family(base.family)
    modules = dict(model.named_modules())
    out = []
    for g in fam.groups(base):
        if g.kind != "conv":
            raise ArchsearchError(f"{base.name}: group {g.name} is a channel selection with no filters of its own; "
                                  "filter-norm criteria apply to conv groups only")
        w = modules[g.name].weight.detach().float().cpu()
        out.append(w.abs().flatten(1).sum(1) if p == 1 else w.flatten(1).norm(p=p, dim=1))
    return out


def magnitude(model: nn.Module, base: ArchSpec) -> list[torch.Tensor]:
    """|w| of every conv weight, conv by conv (`Family.convs` order)."""
    modules = dict(model.named_modules())
    return [modules[c.name].weight.detach().abs().float().cpu() for c in get_family(base.family).convs(base)]


def lamp_scores(w: torch.Tensor) -> torch.Tensor:
    """LAMP (Lee et al., ICLR 2021, Eq. 2): with the layer's weights sorted ascending by
    magnitude, score(u) = w_u^2 / sum_{v >= u} w_v^2. Ties keep their position order, so
    every score is defined; the largest weight scores 1."""
    sq = w.detach().float().flatten() ** 2
    order = torch.argsort(sq, stable=True)
    s = sq[order]
    tail = s.flip(0).cumsum(0).flip(0)  # sum over v >= u in sorted order
    scores = torch.empty_like(sq)
    scores[order] = torch.where(tail > 0, s / tail.clamp_min(torch.finfo(tail.dtype).tiny), torch.zeros_like(s))
    return scores.reshape(w.shape)


def lamp(model: nn.Module, base: ArchSpec) -> list[torch.Tensor]:
    """LAMP scores of every conv weight: comparable across layers, so one global threshold
    gives each layer an adaptive sparsity."""
    return [lamp_scores(w) for w in magnitude(model, base)]
