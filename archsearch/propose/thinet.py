"""ThiNet (Luo et al., ICCV 2017) as an architecture proposer.

Train the base net plainly; then, for each channel group at its predefined ratio, sample the
inputs of the layer that reads the group (`reconstruct.consumer_inputs`: 256 training images,
10 random (position, output channel) pairs each, as the paper samples), greedily remove the
channels whose summed contribution to those outputs stays smallest (the paper's Algorithm 1),
and rescale the kept channels' weights in the reading layer by least squares (its Eq. 6).
ThiNet's architecture is predefined like L1-norm pruning's (one ratio per layer; the paper
used 50% on VGG-16's conv1_1..conv4_3 and 30-70% on ResNet-50): `--ratio`, `--stage-ratios`,
`--skip`. Groups go layer by layer, each judged on the net with the ones before it pruned,
as the paper does; the paper also fine-tunes a little between layers, which is not done here
(see `reconstruct`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..data import Dataset
from ..spec import ArchSpec
from .base import Pruned, Proposer, Settings, channel_proposal, register_proposer
from .options import PerLayerOptions
from .reconstruct import ReaderAllocation, prune_by_readers, sampled_contributions, thinet_select, weight_matrix

IMAGES, PER_IMAGE = 256, 10


@dataclass(frozen=True)
class ThiNetOptions(PerLayerOptions):
    pass  # the predefined-ratio options at their defaults (ratio 0.5 per group; no named variants)


@register_proposer
class ThiNet(ReaderAllocation, Proposer):
    name = "thinet"
    imagenet_scratch_b_cap = 2.0  # imagenet/thinet/main_B.py: 180 epochs when the FLOP ratio is >= 2
    kind = "channels"
    about = "ThiNet: channels chosen by the next layer's reconstruction error, kept weights rescaled (Luo et al. 2017)"
    options = ThiNetOptions
    data_aware = True

    def prune(self, model: nn.Module, base: ArchSpec, settings: Settings, data: Dataset) -> Pruned:
        def choose(i, layer, x, x_orig, n_keep):  # ThiNet reconstructs the current layer's own output
            k, scale = thinet_select(sampled_contributions(x, layer, PER_IMAGE, seed=i), n_keep)
            kept = weight_matrix(layer)[:, torch.from_numpy(k).nonzero().squeeze(1)]
            return k, kept * scale.view(1, -1, 1), None

        keep, _ = prune_by_readers(model, base, data, settings.layer_ratios, IMAGES, choose)
        return channel_proposal(model, base, keep, layer_ratios=settings.layer_ratios, images=IMAGES,
                                samples_per_image=PER_IMAGE)
