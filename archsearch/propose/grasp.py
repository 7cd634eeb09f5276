"""GraSP: gradient signal preservation (Wang et al., ICLR 2020), at initialisation, as an
architecture proposer.

Transcribed from alecwangcq/GraSP (commit f17d87a), `pruner/GraSP.py`:
- l.54: the scores come from a copy of the net, left in train mode (its `.eval()` is
  commented out), so batch norm normalises by the batch's statistics;
- l.62-66: `reinit=True`: the copy's linear layers are re-drawn with `xavier_normal`; the
  weights taken are every Conv2d and Linear weight, in module order;
- l.78-112 (`GraSP_fetch_data`, l.11-30): `samples_per_class` images of every class from the
  shuffled, augmented training loader, concatenated class by class, split in two halves;
  g = the sum of the two halves' gradients of the cross-entropy of the logits / T, T = 200;
- l.117-134: for each half, z = sum(g . grad_f) with `create_graph=True`, `z.backward()`:
  the weights' .grad is then Hg (summed over the halves);
- l.136-146: score = -w * Hg, divided by |sum of all scores| + 1e-10;
- l.148-155: `num_params_to_rm = int(N * ratio)`, the threshold is the `num_params_to_rm`-th
  largest score (`torch.topk(...)[-1]`), and the weights with scores at or below it are
  kept: the highest scores go (one fewer than `num_params_to_rm`, without ties).
- `main_prune_non_imagenet.py` l.246 and l.266-270: with one iteration the ratio is
  `1 - (1 - target_ratio) ** 1.0`; the model is freshly initialised and `num_iters=1`;
  the CIFAR configs (`configs/cifar10/vgg19/GraSP_90.json`) take `samples_per_class: 10`.
The original prunes the convs and the linear layers, counting N over both; here the convs of
`Family.convs` are pruned (N counts them) and the linear layers only take part in g and Hg
and in the normalisation, as in the original.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import is_whole
from ..errors import ArchsearchError
from .at_init import (InitChannelProposer, InitProposer, Scored, channel_masks, channel_sums, conv_names, group_slices,
                      per_class_batch)
from .base import register_proposer
from .options import Options, default, option

T = 200.0     # the softmax temperature of `GraSP(..., T=200)`
EPS = 1e-10   # `eps` of the normalisation


def grasp_scores(model: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator) -> list[torch.Tensor]:
    """-w * Hg of the named convs, normalised as the original (a copy: `model` is left as it is).
    `generator` draws the copy's re-initialised linear weights."""
    net = copy.deepcopy(model).train()
    net.zero_grad()
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for m in layers:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight, generator=generator)
    weights = [m.weight for m in layers]
    n = len(x)
    halves = [(x[:n // 2], y[:n // 2]), (x[n // 2:], y[n // 2:])]
    grad_w = None
    for xb, yb in halves:
        g = torch.autograd.grad(F.cross_entropy(net(xb) / T, yb), weights)
        grad_w = list(g) if grad_w is None else [a + b for a, b in zip(grad_w, g)]
    for xb, yb in halves:
        grad_f = torch.autograd.grad(F.cross_entropy(net(xb) / T, yb), weights, create_graph=True)
        z = 0
        for gw, gf in zip(grad_w, grad_f):
            z += (gw.detach() * gf).sum()
        z.backward()
    scores = {id(m.weight): -m.weight.detach() * m.weight.grad for m in layers}  # -theta_q Hg
    norm = torch.abs(torch.cat([s.flatten() for s in scores.values()]).sum()) + EPS
    modules = dict(net.named_modules())
    return [scores[id(modules[n].weight)] / norm for n in names]


def grasp_masks(scores: list[torch.Tensor], ratio: float) -> tuple[list[torch.Tensor], float]:
    """Keep the scores at or below the int(N x ratio)-th largest (l.148-155)."""
    flat = torch.cat([s.flatten() for s in scores])
    ratio = 1 - (1 - ratio) ** (1.0 / 1)  # main_prune_non_imagenet.py's per-iteration ratio, one iteration
    n_rm = int(len(flat) * ratio)
    if n_rm < 1:
        raise ArchsearchError(f"grasp at ratio {ratio:g} removes no weight of {len(flat)}: give a larger ratio")
    threshold = torch.topk(flat, n_rm, sorted=True).values[-1]
    return [s <= threshold for s in scores], float(threshold)


@dataclass(frozen=True)
class GraspOptions(Options):
    # magnitude's and LAMP's, so that the sparsity patterns are compared at one sparsity by default
    ratio: float = default("ratio", 0.8, help="Prune ratio: the share of conv weights removed.")
    samples_per_class: int = option(10, "Training images of each class the gradient and the Hessian-gradient "
                                        "product are computed on (the GraSP CIFAR configs' samples_per_class).")

    def __post_init__(self) -> None:
        super().__post_init__()
        s = self.samples_per_class
        if not is_whole(s, 1, 1000):
            raise ArchsearchError(f"samples_per_class must be a whole number from 1 to 1000, got {s!r}")


@register_proposer
class Grasp(InitProposer):
    name = "grasp"
    about = "GraSP: gradient-flow preservation -w x Hg at initialisation, one global cut (Wang et al. 2020)"
    options = GraspOptions

    def score(self, model, base, settings, data, device, seed) -> Scored:
        per_class = settings.options["samples_per_class"]
        x, y = per_class_batch(data, per_class, seed, device, self.name)
        generator = torch.Generator(device=device).manual_seed(seed)
        scores = grasp_scores(model, conv_names(base), x, y, generator)
        masks, threshold = grasp_masks(scores, settings.ratio)
        return Scored(masks, threshold, scores, {"images": len(x), "batches": 2, "temperature": T},
                      higher_keeps=False)


@dataclass(frozen=True)
class GraspChannelOptions(GraspOptions):
    ratio: float = default("ratio", 0.5, help="Prune ratio: the share of channels removed by one global cut of the "
                                              "channel groups' summed scores (the highest go, as GraSP's weights).")


@register_proposer
class GraspChannels(InitChannelProposer):
    name = "grasp_ch"
    about = ("GraSP for channels: each channel's summed -w x Hg at initialisation, the highest go in one global "
             "cut (Wang et al. 2020; DESIGN.md)")
    options = GraspChannelOptions

    def score(self, model, base, settings, data, device, seed) -> Scored:
        x, y = per_class_batch(data, settings.options["samples_per_class"], seed, device, self.name)
        generator = torch.Generator(device=device).manual_seed(seed)
        sums = channel_sums(grasp_scores(model, conv_names(base), x, y, generator), group_slices(base))
        keeps, threshold, clamped = channel_masks(sums, list(base.widths), settings.ratio, settings.floor, higher_keeps=False)
        return Scored(keeps, threshold, sums, {"images": len(x), "batches": 2, "temperature": T, "clamped": clamped},
                      higher_keeps=False)
