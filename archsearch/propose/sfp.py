"""Soft Filter Pruning (He et al., IJCAI 2018) as an architecture proposer.

While the base net trains, after every epoch (and before that epoch's evaluation, as
`cifar/soft-filter-pruning/pruning_cifar10_resnet.py` does), each conv's
int(n x ratio) output filters with the smallest L2 norm are set to zero; they keep
training and may grow back ("soft"). The original also zeroes once before the first epoch,
and zeroes every conv (its `--layer_begin 0 --layer_end <last> --layer_inter 3` walks
all conv weights, the stem and both convs of each block), at one rate for all layers:
`--rate 0.7` keeps 70% of the filters (`ratio` 0.3 here).

The proposal narrows each channel group (VGG's convs, a ResNet block's first conv) to the
filters left non-zero after the last epoch. Convs outside a channel group (the stem and a
block's second conv, whose outputs join the residual stream) cannot be narrowed without
narrowing the stream; their zeroed filters stay in the inherited weights and the proposal
records their count (`info["soft_zeroed_outside_groups"]`). Like L1-norm pruning, the
architecture is predefined (one ratio per layer); what SFP adds is which filters survive.
The original trains with its own recipe (200 epochs, lr 0.1 with x0.2 steps at 60/120/160,
Nesterov, weight decay 5e-4); here the preset's recipe is used, as for every other method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..archs import get_family
from ..spec import ArchSpec
from ..train import TrainHook
from .allocation import OneRatio
from .base import Pruned, Proposer, Settings, channel_proposal, register_proposer
from .importance import filter_norm
from .options import Options, default


def pruned_count(n: int, ratio: float) -> int:
    """Filters zeroed in a conv of n: the original's `int(n * (1 - compress_rate))`."""
    return int(n * (1 - (1 - ratio)))


class SoftFilterZeroing(TrainHook):
    """Zero the int(n x ratio) lowest-L2 filters of each named conv: when attached (the
    original's mask before training) and after every epoch."""

    def __init__(self, convs: list[str], ratio: float):
        self.convs, self.ratio = list(convs), float(ratio)
        self.zeroed: dict[str, list[int]] = {}

    def key(self) -> dict:
        return {"sfp": self.ratio, "convs": len(self.convs)}

    @torch.no_grad()
    def zero(self, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        for name in self.convs:
            w = modules[name].weight
            norms = w.detach().flatten(1).norm(p=2, dim=1).float().cpu()
            drop = torch.argsort(norms, stable=True)[:pruned_count(w.shape[0], self.ratio)]
            w[drop.to(w.device)] = 0
            self.zeroed[name] = sorted(drop.tolist())

    def attach(self, model: nn.Module) -> None:
        self.zero(model)

    def epoch_end(self, model: nn.Module, epoch: int) -> None:
        self.zero(model)


@dataclass(frozen=True)
class SFPOptions(Options):
    ratio: float = default("ratio", 0.3, help="Prune ratio of every conv: the share of its filters zeroed "
                                              "each epoch, then removed.")  # the README's --rate 0.7


@register_proposer
class SFP(Proposer):
    name = "sfp"
    kind = "channels"
    about = "Soft Filter Pruning: lowest-L2 filters zeroed after every epoch, then removed (He et al. 2018)"
    families = ("vgg", "resnet")
    options = SFPOptions
    allocation = OneRatio(pruned_count)

    def hooks(self, base: ArchSpec, settings: Settings) -> list[TrainHook]:
        convs = [c.name for c in get_family(base.family).convs(base)]
        return super().hooks(base, settings) + [SoftFilterZeroing(convs, settings.ratio)]

    def prune(self, model: nn.Module, base: ArchSpec, settings: Settings) -> Pruned:
        fam = get_family(base.family)
        norms = filter_norm(model, base, p=2)
        keep = [k.numpy() for k in self.allocation.keep(norms, settings)[0]]
        in_groups = {g.name for g in fam.groups(base)}
        modules = dict(model.named_modules())
        outside = {c.name: int((modules[c.name].weight.detach().flatten(1).abs().sum(1) == 0).sum())
                   for c in fam.convs(base) if c.name not in in_groups}
        return channel_proposal(model, base, keep, soft_zeroed_outside_groups=outside)
