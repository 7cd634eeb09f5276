"""Pruning at initialisation: what SNIP, GraSP and SynFlow share (`snip.py`, `grasp.py`,
`synflow.py`).

These methods train nothing. They score every conv weight of the base net *as initialised*
(the weights `train` would start from with this seed: `base.initial_state`), with one or
two batches of training images (SNIP, GraSP) or with no data at all (SynFlow), and keep the
best-scoring weights under one global threshold. The proposal is a sparsity pattern like
magnitude pruning's (`magnitude.masked_proposal`); its inherited weights are the initial
weights under the mask, which is what the three papers train.

The proposal's record says so (`InitProposer.run`): the base net trained 0 epochs in 0
seconds; its accuracies are not tested (None: an untrained net is at chance, and the test
passes would cost more than the scoring) unless `propose` is asked (a table sweep); and
`info` names the data the scores used (`images`, `batches`) and the seconds the scoring took. Which layers are scored: the convs of `Family.convs`, as
magnitude pruning (the originals also prune the linear layers; here the classifier stays
dense, as in every sparsity proposal of archsearch).

Each method also proposes channels (`snip_ch`, `grasp_ch`, `synflow_ch`: `InitChannelProposer`),
scoring each channel group (`Family.groups`) with the sum of its weights' scores (DESIGN.md,
"Proposers at initialization"): a conv group's weights are its filters, the output slices
of every conv writing the group (a coupled group of a `tv.*` family: all of them); a
selection group (PreResNet, DenseNet), which has no filters, owns the input slices of the
convs reading it. One global cut over the group sums (`allocation.global_threshold`,
round(ratio x channels) go) picks the widths, as Network Slimming's |gamma| threshold does;
a group the cut would empty keeps its best channel (`floor_channels`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..archs import build_with, get_family
from ..errors import ArchsearchError
from ..spec import ArchSpec
from ..train import device_name, resolve_device
from .allocation import floor_channels, global_threshold, keep_one, top_k
from .base import Proposer, Pruned, Settings, channel_proposal, initial_state, save_ticket
from .magnitude import masked_proposal


@dataclass
class Untrained:
    """What `propose` records of the base net of a method that does not train it: 0 epochs
    in 0 seconds; `best_acc` and `final_acc` the initialised net's test accuracy where
    `propose` is asked to test it (else None: an untrained net is at chance)."""

    device_name: str
    best_acc: float | None = None
    final_acc: float | None = None
    epochs: int = 0
    train_seconds: float = 0.0


@dataclass
class Scored:
    """A method's keep masks (one per conv, `Family.convs` order) and what it records."""

    masks: list[torch.Tensor]
    threshold: float
    scores: list[torch.Tensor]   # the scores the masks were cut from (for the known-answer tests)
    facts: dict[str, Any]        # images and batches used, the method's own numbers
    higher_keeps: bool = True    # GraSP removes its highest scores: False


def conv_names(base: ArchSpec) -> list[str]:
    return [c.name for c in get_family(base.family).convs(base)]


def conv_weights(model: nn.Module, names: list[str]) -> list[torch.Tensor]:
    modules = dict(model.named_modules())
    return [modules[n].weight for n in names]


def random_batch(data, n: int, seed: int, device: torch.device, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` training images drawn at random (seeded), in one batch, without augmentation:
    snip-public's `dataset.get_next_batch('train', batch_size)` feeds the raw images."""
    if n > data.n_train:
        raise ArchsearchError(f"{method} scores one batch of {n} training images, but the training set has "
                              f"{data.n_train}: give a smaller samples option or more training images")
    idx = np.sort(np.random.default_rng(seed).choice(data.n_train, n, replace=False))
    return next(iter(data.loader("train", n, train=False, device=device, indices=idx)))


def per_class_batch(data, per_class: int, seed: int, device: torch.device,
                    method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_class` training images of every class, augmented as in training, class by class
    (class 0's first): GraSP's `GraSP_fetch_data` takes the first `samples_per_class` of each
    class from the shuffled, augmented training loader and concatenates them in class order."""
    counts = np.bincount(np.asarray(data.y_train), minlength=data.num_classes)
    if counts.min() < per_class:
        c = int(counts.argmin())
        raise ArchsearchError(f"{method} needs {per_class} training images of every class, but class {c} has "
                              f"{int(counts[c])}: give a smaller samples_per_class option or more training images")
    order = np.random.default_rng(seed).permutation(data.n_train)
    y = np.asarray(data.y_train)[order]
    idx = np.concatenate([order[y == c][:per_class] for c in range(data.num_classes)])
    xb, yb = next(iter(data.loader("train", len(idx), train=True, device=device, seed=seed, indices=idx)))
    by_class = torch.argsort(yb, stable=True)  # the loader shuffles its batch: back to class order
    return xb[by_class], yb[by_class]


def keep_top(scores: list[torch.Tensor], n_keep: int) -> tuple[list[torch.Tensor], float]:
    """Keep the `n_keep` highest scores over all layers, ties to the earlier position (as
    TensorFlow's `top_k`, which snip-public's `create_sparse_mask` uses). Returns the masks and
    the threshold (the lowest kept score)."""
    flat = torch.cat([s.flatten() for s in scores])
    keep = top_k(flat, n_keep)
    threshold = float(flat[keep].min()) if n_keep > 0 else float(flat.max())  # nothing kept: above them all
    return [k.reshape(s.shape) for k, s in zip(keep.split([s.numel() for s in scores]), scores)], threshold


def prune_at_or_below(scores: list[torch.Tensor], n_prune: int) -> tuple[list[torch.Tensor], float] | None:
    """Synaptic-Flow's `Pruner._global_mask`: the `n_prune`-th smallest score is the threshold
    (`torch.kthvalue`) and every score at or below it goes (ties included). None when
    `n_prune` < 1 (the original leaves the masks as they are)."""
    if n_prune < 1:
        return None
    threshold = kth_smallest(torch.cat([s.flatten() for s in scores]), n_prune)
    return [s > threshold for s in scores], threshold


def kth_smallest(flat: torch.Tensor, k: int) -> float:
    """The k-th smallest value (from 1) of `flat`, as `torch.kthvalue` gives it, from NumPy's
    sort: its vectorised sort is 4-5x faster than a selection here (VGG-16's 15M SynFlow
    scores, most of them tied at 0 in the later rounds, on one CPU thread: 0.036 s against
    0.178 s for `torch.kthvalue` and 0.69 s for `np.partition`; benchmarks/results/README.md)."""
    return float(np.sort(flat.detach().cpu().numpy())[k - 1])


class InitProposer(Proposer):
    """A method that scores the initialised base net instead of training it (`run`)."""

    kind = "sparsity"
    trains = False

    def score(self, model: nn.Module, base: ArchSpec, settings: Settings, data, device: torch.device,
              seed: int) -> Scored:
        """The keep masks of the initialised `model` (left unchanged)."""
        raise NotImplementedError

    def run(self, base, data, settings, schedule, run, *, seed, device, progress, checkpoint_every, base_dir):
        """Score the base net as initialised with this seed and prune it; train nothing.
        Returns (Pruned, Untrained)."""
        dev = resolve_device(device)
        init = initial_state(base, seed)
        start = time.perf_counter()
        scored = self.score(build_with(base, init).to(dev), base, settings, data, dev, seed)
        seconds = time.perf_counter() - start
        pruned = self.proposal(base, init, scored)
        pruned.info.update(trained_epochs=0, score_seconds=round(seconds, 3), **scored.facts,
                           base_acc="the initialised, untrained base net: not tested unless asked (at chance)")
        return pruned, Untrained(device_name(dev))

    @staticmethod
    def proposal(base: ArchSpec, init: dict[str, torch.Tensor], scored: Scored) -> Pruned:
        """The initial weights under the masks; a conv the threshold would empty keeps its
        best-scoring weight (`keep_one`)."""
        masks = [m.detach().cpu().clone() for m in scored.masks]
        sign = 1.0 if scored.higher_keeps else -1.0
        clamped = keep_one(masks, [sign * s.detach().double().cpu() for s in scored.scores])
        return masked_proposal(build_with(base, init), base, [m.numpy() for m in masks], scored.threshold, clamped)


# -- channels: each group scored by the sum of its weights' scores --------------------------------------
def group_slices(base: ArchSpec) -> list[list[tuple[int, int]]]:
    """Per channel group (`Family.groups` order), the weights it owns as (conv index in
    `Family.convs` order, dim): dim 0, the output filters of each conv writing a conv group;
    dim 1, the input slices of each conv reading a selection group. A selection group that
    no conv reads (PreResNet's and DenseNet's last, before the classifier) owns none: it is
    not scored and keeps every channel."""
    fam = get_family(base.family)
    pos = {c.name: i for i, c in enumerate(fam.convs(base))}
    wires = fam.wires(base)
    out = []
    for g in fam.groups(base):
        dim = 0 if g.kind == "conv" else 1
        owned = [(pos[m], dim) for m, ends in wires.items() if m in pos and ends[dim] == g.name]
        if not owned and g.kind == "conv":
            raise ArchsearchError(f"{base.name}: channel group {g.name} owns no conv weights to score it by")
        out.append(owned)
    if not any(out):
        raise ArchsearchError(f"{base.name}: no channel group owns conv weights to score it by")
    return out


def channel_sums(scores: list[torch.Tensor], slices: list[list[tuple[int, int]]]) -> list[torch.Tensor | None]:
    """Each group's per-channel score: the sum (float64) of its weights' scores (None for a
    group that owns no weights)."""
    out: list[torch.Tensor | None] = []
    for owned in slices:
        total = None
        for i, dim in owned:
            s = scores[i].double()
            part = s.sum(dim=tuple(d for d in range(s.dim()) if d != dim))
            total = part if total is None else total + part
        out.append(None if total is None else total.cpu())
    return out


def channel_masks(sums: list[torch.Tensor | None], widths: list[int], ratio: float, floor: float,
                  higher_keeps: bool = True, n_prune: int | None = None) -> tuple[list[torch.Tensor], float, list[dict]]:
    """One global cut over the scored groups' sums: round(ratio x their channels) (or
    `n_prune`) channels with the lowest sums go (`higher_keeps` False, GraSP: the highest); a
    group left below its floor keeps its best channels; an unscored group (None) keeps all
    its `widths` channels. Returns (keep masks, threshold, clamped groups, numbered in all
    groups)."""
    scored = [i for i, s in enumerate(sums) if s is not None]
    signed = [sums[i] if higher_keeps else -sums[i] for i in scored]
    cut, threshold = global_threshold(signed, ratio, "round", n_prune=n_prune)
    clamped = floor_channels(cut, signed, floor)
    keeps = [torch.ones(n, dtype=torch.bool) for n in widths]
    for i, k in zip(scored, cut):
        keeps[i] = k
    clamped = [{**c, "layer": scored[c["layer"]]} for c in clamped]
    return keeps, threshold if higher_keeps else -threshold, clamped


class InitChannelProposer(InitProposer):
    """An at-initialisation method proposing channels: `score` returns one keep mask and one
    summed score per channel group (`Scored.masks`, `Scored.scores`), the clamped groups in
    `Scored.facts["clamped"]`."""

    kind = "channels"

    def check_family(self, base: ArchSpec) -> None:
        super().check_family(base)
        group_slices(base)  # a group with no weights to score refuses here, before any work

    def proposal(self, base: ArchSpec, init: dict[str, torch.Tensor], scored: Scored) -> Pruned:
        """The initial weights of the kept channels (`channel_proposal`)."""
        clamped = scored.facts.pop("clamped", [])
        return channel_proposal(build_with(base, init), base, [m.numpy() for m in scored.masks],
                                threshold=scored.threshold, clamped=clamped)

    def run(self, base, data, settings, schedule, run, *, seed, device, progress, checkpoint_every, base_dir):
        pruned, untrained = super().run(base, data, settings, schedule, run, seed=seed, device=device,
                                        progress=progress, checkpoint_every=checkpoint_every, base_dir=base_dir)
        save_ticket(pruned, base, seed, run)  # the kept channels' initial weights, as every channel proposal
        return pruned, untrained
