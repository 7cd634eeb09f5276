"""Network Slimming (Liu et al., ICCV 2017) as an architecture proposer.

Train with an L1 subgradient s*sign(gamma) on every BN scale (s = 1e-4 for VGG, 1e-5 for
ResNet/DenseNet; Sec. 3.2 / the authors' code), then prune channels by one global
threshold on |gamma| across all BN layers (Sec. 3.3). The global threshold is what
lets the method decide per-layer widths, and also what empties late VGG layers at high
ratios (the most reported bug of the original code), so a per-layer floor keeps at
least max(1, ceil(floor * width)) channels, and every clamped layer is recorded.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..archs import get_family
from ..spec import ArchSpec
from . import Pruned, Proposer, prune_smallest, register_proposer


def slimming_keep(gammas: list[torch.Tensor], ratio: float, floor: float = 0.0) -> tuple[list[np.ndarray], float, list[dict]]:
    """Global |gamma| pruning. Returns per-layer keep masks, the threshold, clamped layers.

    Exactly round(ratio * total) channels with the smallest |gamma| are pruned (ties broken
    by layer order, so the prune count is exact). The threshold reported is the largest
    pruned |gamma|: every kept channel of an unclamped layer has |gamma| >= it.
    """
    keeps, threshold = prune_smallest(gammas, ratio)
    masks, clamped = [], []
    for i, (k, g) in enumerate(zip(keeps, gammas)):
        n, g = len(k), g.detach().abs().float().cpu()
        need = max(1, math.ceil(floor * n))
        if int(k.sum()) < need:
            clamped.append({"layer": i, "kept_by_threshold": int(k.sum()), "kept": need, "width": n})
            k[:] = False
            k[torch.argsort(g, descending=True, stable=True)[:need]] = True
        masks.append(k.numpy())
    return masks, threshold, clamped


@register_proposer
class Slimming(Proposer):
    name = "slimming"
    kind = "channels"
    default_ratio = 0.6  # VGG-16 on CIFAR-10, the paper's Table 11 setting
    about = "Network Slimming: L1 on BN scales, one global |gamma| threshold (Liu et al. 2017)"

    def sparsity(self, family: str) -> float:
        return 1e-4 if family == "vgg" else 1e-5

    def prune(self, model: nn.Module, base: ArchSpec, ratio: float, floor: float) -> Pruned:
        """One global threshold over the scales of every channel group's BN (for a selection
        group, the stream BN before it, at the channels it selects): all BNs of VGG,
        PreResNet and DenseNet, as the original `vggprune.py`, `resprune.py` and
        `denseprune.py` rank them; a ResNet block's first BN."""
        fam = get_family(base.family)
        modules = dict(model.named_modules())
        gammas = []
        for g in fam.groups(base):
            w = modules[g.bn].weight
            gammas.append(w[fam.selection(base, g)] if g.kind == "select" else w)
        keep, threshold, clamped = slimming_keep(gammas, ratio, floor)
        spec, state = fam.narrow(model, base, keep)
        spec = spec.replace(base_widths=base.widths)
        names = [g.name for g in fam.groups(base)]
        for c in clamped:
            c["group"] = names[c["layer"]]
        info = {"threshold": threshold, "clamped": clamped, "floor": floor,
                "pruned_channels": int(sum(len(k) - k.sum() for k in keep)),
                "total_channels": int(sum(len(k) for k in keep))}
        return Pruned(spec, state, info)
