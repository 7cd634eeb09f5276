"""SynFlow: iterative synaptic flow pruning (Tanaka et al., NeurIPS 2020), at initialisation
and without data, as an architecture proposer.

Transcribed from ganguli-lab/Synaptic-Flow (commit 9dfa57a):
- `Pruners/pruners.py` l.178-211 (`SynFlow.score`): every entry of the state dict is replaced
  by its absolute value (`linearize`), one all-ones input of the data's shape ([1, C, H, W])
  goes through the net, R = sum(output) is backpropagated, and a weight's score is
  |dR/dw * w|; the signs are restored afterwards (here: a copy is scored);
- `prune.py` l.5-24 (`prune_loop`): the net in eval mode (`--prune-train-mode` False), so
  batch norm uses its running statistics; `epochs` rounds (`--prune-epochs`; the paper's
  SynFlow uses 100), each scoring the masked net and cutting to density
  `d ** ((round + 1) / rounds)` (the exponential `--compression-schedule`), d the final
  density;
- `Pruners/pruners.py` l.12-29 (`_global_mask`): `k = int((1 - density) * N)`, the
  threshold is the k-th smallest score (`torch.kthvalue`), and every weight scoring at or
  below it is masked (ties included); a masked weight scores 0 in later rounds (its
  gradient through `weight * weight_mask` is 0), so it stays masked.
The original masks the convs and the linear layers (`generator.masked_parameters`); here the
convs of `Family.convs` are masked, as magnitude pruning, and the classifier stays dense. The
original scores in float32 (its `model.double()` is commented out), and so does this one;
where the flow overflows float32 (the product of |w| over a deep residual net: ResNet-56 at
width 0.25 reaches 5e53), every round is redone in float64, recorded as `info.precision`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import is_whole
from ..errors import ArchsearchError
from .at_init import (InitChannelProposer, InitProposer, Scored, channel_masks, channel_sums, conv_names, conv_weights,
                      group_slices, prune_at_or_below)
from .base import register_proposer
from .options import Options, default, option


def linearized(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `model` in `dtype` and eval mode with every parameter and buffer replaced by
    its absolute value (`linearize`)."""
    net = copy.deepcopy(model).to(dtype).eval()
    with torch.no_grad():
        for v in net.state_dict().values():
            v.abs_()
    return net


def synflow_scores(net: nn.Module, weights: list[torch.Tensor], shape: tuple[int, ...]) -> list[torch.Tensor] | None:
    """|dR/dw * w| of `weights` (parameters of the linearized `net`), R = sum(net(ones));
    None where R overflows the net's precision."""
    net.zero_grad()
    x = torch.ones((1, *shape), dtype=weights[0].dtype, device=weights[0].device)
    r = net(x).sum()
    if not torch.isfinite(r):
        return None
    r.backward()
    scores = [(w.grad * w).detach().abs() for w in weights]
    # every score is >= 0 or NaN, so a layer's sum (in float64, which float32 scores cannot
    # overflow) is finite exactly when all its scores are: one reduction per layer instead of
    # a boolean copy of every weight (a 15M-weight VGG-16: about a quarter of a round on one thread)
    sums = torch.stack([s.sum(dtype=torch.float64) for s in scores])
    return scores if bool(torch.isfinite(sums).all()) else None


def synflow_rounds(model: nn.Module, names: list[str], shape: tuple[int, ...], ratio: float, rounds: int,
                   dtype: torch.dtype) -> tuple[list[torch.Tensor], float, list[torch.Tensor]] | None:
    """`rounds` rounds of scoring the masked, linearized net and cutting to the exponential
    schedule's density. Returns the masks, the last round's threshold and its scores (None
    where the flow overflows `dtype`)."""
    net = linearized(model, dtype)
    weights = conv_weights(net, names)
    dense = [w.detach().clone() for w in weights]
    masks = [torch.ones_like(w, dtype=torch.bool) for w in weights]
    density, threshold = 1.0 - ratio, 0.0
    for r in range(rounds):
        with torch.no_grad():
            for w, w0, m in zip(weights, dense, masks):
                w.copy_(w0 * m)  # the original's `weight * weight_mask`
        scores = synflow_scores(net, weights, shape)
        if scores is None:
            return None
        sparse = density ** ((r + 1) / rounds)
        cut = prune_at_or_below(scores, int((1.0 - sparse) * sum(s.numel() for s in scores)))
        if cut is not None:
            masks, threshold = cut
    return masks, threshold, scores


def synflow_channel_rounds(model: nn.Module, names: list[str], slices: list[list[tuple[int, int]]],
                           widths: list[int], shape: tuple[int, ...], ratio: float, rounds: int, floor: float,
                           dtype: torch.dtype) -> tuple[list[torch.Tensor], float, list, list] | None:
    """`synflow_rounds` for channels: each round scores the linearized net with the pruned
    channels' weights (`group_slices`) zeroed, sums each channel's scores (`channel_sums`),
    and cuts int((1 - d) x channels) of the scored channels, d the exponential schedule's
    density, by one global cut (`channel_masks`: ties by position, so the count is exact; a
    zeroed channel sums to 0 and goes first; a group the cut would empty keeps its best
    channel, so the flow never stops). Returns the keep masks, the last threshold, the last
    sums and the clamped groups (None where the flow overflows `dtype`)."""
    net = linearized(model, dtype)
    weights = conv_weights(net, names)
    dense = [w.detach().clone() for w in weights]
    keeps = [torch.ones(n, dtype=torch.bool) for n in widths]
    total = sum(n for n, owned in zip(widths, slices) if owned)
    density, threshold, clamped, sums = 1.0 - ratio, 0.0, [], []
    for r in range(rounds):
        with torch.no_grad():
            for w, w0 in zip(weights, dense):
                w.copy_(w0)
            for keep, owned in zip(keeps, slices):
                for i, dim in owned:
                    view = [1] * weights[i].dim()
                    view[dim] = -1
                    weights[i].mul_(keep.to(weights[i].device, weights[i].dtype).view(view))
        scores = synflow_scores(net, weights, shape)
        if scores is None:
            return None
        sums = channel_sums(scores, slices)
        sparse = density ** ((r + 1) / rounds)
        keeps, threshold, clamped = channel_masks(sums, widths, ratio, floor, n_prune=int((1.0 - sparse) * total))
    return keeps, threshold, sums, clamped


def in_precision(method: str, rounds_in: Callable[[torch.dtype], tuple | None]) -> tuple:
    """`rounds_in(dtype)` in float32, as the original, or in float64 where float32 overflows:
    its result, then the precision used."""
    for dtype in (torch.float32, torch.float64):
        out = rounds_in(dtype)
        if out is not None:
            return (*out, dtype)
    raise ArchsearchError(f"{method}: the synaptic flow of this net overflows even float64; it cannot be scored")


def synflow_masks(model: nn.Module, names: list[str], shape: tuple[int, ...], ratio: float,
                  rounds: int) -> tuple[list[torch.Tensor], float, list[torch.Tensor], torch.dtype]:
    """`synflow_rounds` in float32, as the original, or in float64 where float32 overflows:
    (masks, threshold, scores, the precision used)."""
    return in_precision("synflow", lambda dtype: synflow_rounds(model, names, shape, ratio, rounds, dtype))


@dataclass(frozen=True)
class SynflowOptions(Options):
    # magnitude's and LAMP's, so that the sparsity patterns are compared at one sparsity by default
    ratio: float = default("ratio", 0.8, help="Prune ratio: the share of conv weights removed (after all "
                                              "iterations).")
    iterations: int = option(100, "Rounds of scoring and pruning, to the exponential schedule's density each "
                                  "(the paper's 100).")

    def __post_init__(self) -> None:
        super().__post_init__()
        i = self.iterations
        if not is_whole(i, 1, 1000):
            raise ArchsearchError(f"iterations must be a whole number from 1 to 1000, got {i!r}")


@register_proposer
class Synflow(InitProposer):
    name = "synflow"
    about = "SynFlow: iterative synaptic-flow scores at initialisation, no data, one global cut (Tanaka et al. 2020)"
    options = SynflowOptions

    def score(self, model, base, settings, data, device, seed) -> Scored:
        shape = (3, data.size, data.size)  # the data's shape; no image is read
        rounds = settings.options["iterations"]
        masks, threshold, scores, dtype = synflow_masks(model, conv_names(base), shape, settings.ratio, rounds)
        return Scored(masks, threshold, scores, {"images": 0, "batches": 0, "iterations": rounds,
                                                 "input": f"ones {[1, *shape]}", "precision": str(dtype)[6:]})


@dataclass(frozen=True)
class SynflowChannelOptions(SynflowOptions):
    ratio: float = default("ratio", 0.5, help="Prune ratio: the share of channels removed (after all iterations), "
                                              "by one global cut of the channel groups' summed scores.")


@register_proposer
class SynflowChannels(InitChannelProposer):
    name = "synflow_ch"
    about = ("SynFlow for channels: each channel's summed synaptic-flow score, iterative, no data "
             "(Tanaka et al. 2020; DESIGN.md)")
    options = SynflowChannelOptions

    def score(self, model, base, settings, data, device, seed) -> Scored:
        shape = (3, data.size, data.size)
        rounds = settings.options["iterations"]
        names, slices = conv_names(base), group_slices(base)
        keeps, threshold, sums, clamped, dtype = in_precision(self.name, lambda dt: synflow_channel_rounds(
            model, names, slices, list(base.widths), shape, settings.ratio, rounds, settings.floor, dt))
        return Scored(keeps, threshold, sums, {"images": 0, "batches": 0, "iterations": rounds,
                                               "input": f"ones {[1, *shape]}", "precision": str(dtype)[6:],
                                               "clamped": clamped})
