"""SNIP: single-shot network pruning by connection sensitivity (Lee et al., ICLR 2019), at
initialisation, as an architecture proposer.

Transcribed from namhoonlee/snip-public (commit f028496):
- `snip/prune.py` l.7-10: one batch of `--batch_size` (100, `snip/main.py` l.23) training
  images, fed with `is_train: False`, so batch norm uses its moving statistics (the
  initial 0 and 1; `snip/network.py`'s VGG passes `training=is_train` to
  `tf.layers.batch_normalization`): the net in eval mode here;
- `snip/model.py` l.62-70 (`get_sparse_mask`): every prunable weight w is multiplied by a
  mask c = 1, the loss is the mean softmax cross-entropy of that batch, and the connection
  sensitivity is |dL/dc| = |dL/dw * w|, normalised to sum 1 over all prunable weights
  (`normalize_dict`, l.159-163);
- `create_sparse_mask` l.172-185: one global cut, keeping
  `kappa = int(round(num_params * (1 - target_sparsity)))` weights with the highest
  sensitivities (`tf.nn.top_k`: ties to the lower index).
The original's prunable weights are every conv and fully-connected weight and bias; here
they are the convs of `Family.convs`, as magnitude pruning (the normalisation runs over
them; it scales every score alike, so it changes no mask).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import is_whole
from ..errors import ArchsearchError
from .at_init import (InitChannelProposer, InitProposer, Scored, channel_masks, channel_sums, conv_names, conv_weights,
                      group_slices, keep_top, random_batch)
from .base import register_proposer
from .options import Options, default, option


def snip_scores(model: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Normalised connection sensitivities |dL/dw * w| of the named convs on one batch, the
    net in eval mode (a copy: `model` is left as it is)."""
    net = copy.deepcopy(model).eval()
    weights = conv_weights(net, names)
    loss = F.cross_entropy(net(x), y)  # tf.reduce_mean(softmax_cross_entropy_with_logits)
    grads = torch.autograd.grad(loss, weights)
    cs = [(g * w).abs().detach() for g, w in zip(grads, weights)]
    total = torch.cat([c.flatten() for c in cs]).sum()
    return [c / total for c in cs]


def snip_masks(scores: list[torch.Tensor], ratio: float) -> tuple[list[torch.Tensor], float]:
    """`create_sparse_mask`: keep int(round(N x (1 - ratio))) of the N weights, by score."""
    n = sum(s.numel() for s in scores)
    return keep_top(scores, int(round(n * (1.0 - ratio))))


@dataclass(frozen=True)
class SnipOptions(Options):
    # magnitude's and LAMP's, so that the sparsity patterns are compared at one sparsity by default
    ratio: float = default("ratio", 0.8, help="Prune ratio: the share of conv weights removed.")
    samples: int = option(100, "Training images in the one batch the sensitivities are computed on "
                               "(snip-public's --batch_size).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not is_whole(self.samples, 1, 10000):
            raise ArchsearchError(f"samples must be a whole number of images from 1 to 10000, got {self.samples!r}")


@register_proposer
class Snip(InitProposer):
    name = "snip"
    about = "SNIP: connection sensitivity |g x w| at initialisation on one batch, one global cut (Lee et al. 2019)"
    options = SnipOptions

    def score(self, model, base, settings, data, device, seed) -> Scored:
        n = settings.options["samples"]
        x, y = random_batch(data, n, seed, device, self.name)
        scores = snip_scores(model, conv_names(base), x, y)
        masks, threshold = snip_masks(scores, settings.ratio)
        return Scored(masks, threshold, scores, {"images": n, "batches": 1})


@dataclass(frozen=True)
class SnipChannelOptions(SnipOptions):
    ratio: float = default("ratio", 0.5, help="Prune ratio: the share of channels removed by one global cut of the "
                                              "channel groups' summed sensitivities.")


@register_proposer
class SnipChannels(InitChannelProposer):
    name = "snip_ch"
    about = ("SNIP for channels: each channel's summed |g x w| at initialisation on one batch, one global cut "
             "(Lee et al. 2019; DESIGN.md)")
    options = SnipChannelOptions

    def score(self, model, base, settings, data, device, seed) -> Scored:
        n = settings.options["samples"]
        x, y = random_batch(data, n, seed, device, self.name)
        sums = channel_sums(snip_scores(model, conv_names(base), x, y), group_slices(base))
        keeps, threshold, clamped = channel_masks(sums, list(base.widths), settings.ratio, settings.floor)
        return Scored(keeps, threshold, sums, {"images": n, "batches": 1, "clamped": clamped})
