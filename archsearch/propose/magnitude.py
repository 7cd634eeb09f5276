"""Unstructured magnitude pruning (Han et al., NIPS 2015) as an architecture proposer.

Train the base net, then zero the weights with the smallest |w| under one global
threshold over all conv weights (the setting of Liu et al. 2019, Sec. 4.5). What it
proposes is a sparsity pattern: a density per layer and, per 3x3 kernel position, the
fraction of weights kept (the paper's Figure 4), which guided sparsification reuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..archs import get_family
from ..spec import ArchSpec
from .allocation import GlobalThreshold, global_threshold, keep_one
from ..schedule import FineTune
from .base import Pruned, Proposer, Settings, register_proposer
from .importance import magnitude
from .options import Options, default


def magnitude_masks(weights: list[torch.Tensor], ratio: float,
                    rule: str = "original") -> tuple[list[np.ndarray], float, list[int]]:
    """Global magnitude pruning: exactly int(ratio * total) + 1 weights are pruned, as the
    original `cifar/weight-level/cifar_prune.py` counts (`rule="round"`: round(ratio * total)).

    Returns the keep masks (bool, shaped like each weight), the threshold (the largest
    pruned |w|) and the clamped layers. Ties are broken by position, so the sparsity is
    exact even with repeats, except that a layer the threshold would empty keeps its
    largest weight (an empty layer makes the network's output constant); those layers are
    the clamped ones.
    """
    return score_masks([w.detach().abs().float().cpu() for w in weights], ratio, rule)


def score_masks(scores: list[torch.Tensor], ratio: float, rule: str = "round",
                n_prune: int | None = None) -> tuple[list[np.ndarray], float, list[int]]:
    """One global threshold over weight-level scores (`global_threshold`: `rule` counts, or
    exactly `n_prune`), no layer emptied: (masks, threshold, clamped)."""
    keeps, threshold = global_threshold(scores, ratio, rule, n_prune)
    clamped = keep_one(keeps, scores)
    return [k.numpy() for k in keeps], threshold, clamped


def masked_proposal(model: nn.Module, base: ArchSpec, masks: list[np.ndarray], threshold: float,
                    clamped: list[int]) -> Pruned:
    """The sparse net of `masks` (one per conv, `Family.convs` order): its spec, the inherited
    weights with the pruned ones at zero, and the pattern's per-layer facts."""
    names = [c.name for c in get_family(base.family).convs(base)]
    spec = base.replace(masks=dict(zip(names, masks)), meta={})
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, mask in zip(names, masks):
        state[f"{name}.weight"] = state[f"{name}.weight"] * torch.from_numpy(mask).to(state[f"{name}.weight"].dtype)
        state[f"{name}.weight_mask"] = torch.from_numpy(mask).float()
    info = {"threshold": threshold, "convs": names, "density": [float(m.mean()) for m in masks],
            "kernel_keep": [kernel_keep(m).round(6).tolist() for m in masks],
            "clamped": [{"layer": i, "conv": names[i], "kept": 1} for i in clamped]}
    return Pruned(spec, state, info)


def kernel_keep(mask: np.ndarray) -> np.ndarray:
    """Fraction of weights kept at each kernel position of one conv layer: (k, k)."""
    return np.asarray(mask, dtype=bool).reshape(-1, *mask.shape[-2:]).mean(axis=0)


@dataclass(frozen=True)
class MagnitudeOptions(Options):
    # 80%: inside the paper's unstructured range for VGG-16 on CIFAR-10 (30%-95%, Table 7
    # / Fig. 3) and past the point where accuracy starts to depend on which weights stay,
    # so the kept pattern is informative; at 95% the first layers set the pattern alone.
    ratio: float = default("ratio", 0.8, help="Prune ratio: the share of conv weights removed.")


@register_proposer
class Magnitude(Proposer):
    name = "magnitude"
    kind = "sparsity"
    about = "unstructured magnitude pruning: one global |w| threshold over all conv weights (Han et al. 2015)"
    options = MagnitudeOptions
    allocation = GlobalThreshold("original")  # cifar_prune.py's count: int(p x N) + 1
    finetune = FineTune(0.25, imagenet_fraction=10 / 90,
                        source="Rethinking cifar/weight-level/cifar_finetune.py: 40 epochs at lr 0.001 (its schedule "
                               "[41, 42] never steps); imagenet/weight-level/main_finetune.py: 10 epochs at lr 0.001")

    def prune(self, model: nn.Module, base: ArchSpec, settings: Settings) -> Pruned:
        return masked_proposal(model, base, *score_masks(magnitude(model, base), settings.ratio, self.allocation.rule))
