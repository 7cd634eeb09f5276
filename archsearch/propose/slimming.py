"""Network Slimming (Liu et al., ICCV 2017) as an architecture proposer.

Train with an L1 subgradient s*sign(gamma) on every BN scale (s = 1e-4 for VGG, 1e-5 for
ResNet/DenseNet; Sec. 3.2 / the authors' code), then prune channels by one global
threshold on |gamma| across all BN layers (Sec. 3.3). The global threshold is what
lets the method decide per-layer widths, and also what empties late VGG layers at high
ratios (the most reported bug of the original code), so a per-layer floor keeps at
least max(1, ceil(floor * width)) channels, and every clamped layer is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..spec import ArchSpec
from .allocation import GlobalThreshold, floor_channels, global_threshold
from ..schedule import FineTune
from .base import Pruned, Proposer, Settings, channel_proposal, register_proposer
from .importance import bn_scale
from .options import Options, default


def slimming_keep(gammas: list[torch.Tensor], ratio: float, floor: float = 0.0,
                  rule: str = "original") -> tuple[list[np.ndarray], float, list[dict]]:
    """Global |gamma| pruning. Returns per-layer keep masks, the threshold, clamped layers.

    Exactly int(ratio * total) + 1 channels with the smallest |gamma| are pruned, as the
    original `vggprune.py` counts (`rule="round"`: round(ratio * total); `allocation.prune_count`);
    ties are broken by layer order, so the prune count is exact. The threshold reported is the
    largest pruned |gamma|: every kept channel of an unclamped layer has |gamma| >= it.
    """
    scores = [g.detach().abs().float().cpu() for g in gammas]
    keeps, threshold = global_threshold(scores, ratio, rule)
    clamped = floor_channels(keeps, scores, floor)
    return [k.numpy() for k in keeps], threshold, clamped


@dataclass(frozen=True)
class SlimmingOptions(Options):
    ratio: float = default("ratio", 0.6, help="Prune ratio: the share of channels removed by one global "
                                              "|gamma| threshold.")  # VGG-16 on CIFAR-10, the paper's Table 11
    sparsity: float | None = default("sparsity", None, help="L1 strength s on the BN scales while the base net "
                                                            "trains (default: 1e-4 for VGG, 1e-5 otherwise).")


@register_proposer
class Slimming(Proposer):
    name = "slimming"
    kind = "channels"
    about = "Network Slimming: L1 on BN scales, one global |gamma| threshold (Liu et al. 2017)"
    options = SlimmingOptions
    allocation = GlobalThreshold("original")  # vggprune.py's count: int(p x N) + 1
    criterion = staticmethod(bn_scale)  # |gamma| of each group's BN
    # Network Slimming's own code fine-tunes as long as it trains, under the training recipe
    # (github.com/Eric-mingjie/network-slimming README: `main.py --refine ... --epochs 160`, lr 0.1 x0.1 at
    # 50%/75%; its README's "Fine-tune-160" columns). The Rethinking code's cifar/network-slimming/
    # main_finetune.py defaults to 40 epochs at lr 0.001 (its help text still says 160); its imagenet/
    # network-slimming/main_finetune.py runs 5 of 90 epochs at lr 0.001.
    finetune = FineTune(1.0, "train", imagenet_fraction=5 / 90, imagenet_lr="finetune",
                        source="network-slimming README: main.py --refine --epochs 160 (CIFAR); Rethinking "
                               "imagenet/network-slimming/main_finetune.py: 5 epochs at lr 0.001 (ImageNet)")

    def default_sparsity(self, family: str) -> float:
        return 1e-4 if family == "vgg" else 1e-5

    def prune(self, model: nn.Module, base: ArchSpec, settings: Settings) -> Pruned:
        """One global threshold over the scales of every channel group's BN (for a selection
        group, the stream BN before it, at the channels it selects): all BNs of VGG,
        PreResNet and DenseNet, as the original `vggprune.py`, `resprune.py` and
        `denseprune.py` rank them; a ResNet block's first BN."""
        keep, threshold, clamped = slimming_keep(self.criterion(model, base), settings.ratio, settings.floor,
                                                 self.allocation.rule)
        return channel_proposal(model, base, keep, threshold=threshold, clamped=clamped, floor=settings.floor)
