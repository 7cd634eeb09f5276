"""Known answers against direct transcriptions of the original code's pruning rules (issue 29,
item 5): each original rule is written out here as the original script does it, on numpy, and
archsearch's rule must prune exactly the same items on small random problems without ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archsearch.propose.allocation import prune_count
from archsearch.propose.lottery import prune_alive
from archsearch.propose.magnitude import magnitude_masks
from archsearch.propose.slimming import slimming_keep


def vggprune(gammas: list[np.ndarray], percent: float) -> list[np.ndarray]:
    """cifar/network-slimming/vggprune.py: `y, i = torch.sort(bn); thre_index = int(total *
    args.percent); thre = y[thre_index]; mask = weight_copy.gt(thre)` over all BN |gamma|."""
    y = np.sort(np.concatenate([np.abs(g).ravel() for g in gammas]))
    thre = y[int(len(y) * percent)]
    return [np.abs(g) > thre for g in gammas]


def cifar_prune_iterative(weights: list[np.ndarray], masks: list[np.ndarray] | None, percent: float):
    """cifar/lottery-ticket/weight-level/cifar_prune_iterative.py: the pruned weights are zero;
    `thre_index = total - total_nonzero + int(total_nonzero * args.percent); thre = y[thre_index];
    mask = weight_copy.gt(thre)`."""
    w = [np.abs(x) * (m if masks is not None else 1) for x, m in zip(weights, masks or weights)]
    y = np.sort(np.concatenate([x.ravel() for x in w]))
    total, nonzero = len(y), int(sum((x != 0).sum() for x in w))
    thre = y[total - nonzero + int(nonzero * percent)]
    return [x > thre for x in w]


@pytest.mark.parametrize("percent", [0.1, 0.4, 0.5, 0.7, 0.8])
def test_slimming_prunes_what_vggprune_prunes(percent):
    rng = np.random.default_rng(int(percent * 100))
    gammas = [rng.normal(size=n).astype(np.float32) for n in (16, 16, 32, 32, 64, 64)]
    ours, _, clamped = slimming_keep([torch.from_numpy(g) for g in gammas], percent)
    theirs = vggprune(gammas, percent)
    assert not clamped and all((a == b).all() for a, b in zip(ours, theirs))


def test_vgg16_quarter_width_counts_of_the_issue():
    """VGG-16 at width 0.25 has 1,056 channels: the original prunes 529 and 740 at 0.5 and 0.7."""
    assert [prune_count(1056, p, "original") for p in (0.5, 0.7)] == [529, 740]
    assert [prune_count(1056, p, "round") for p in (0.5, 0.7)] == [528, 739]


@pytest.mark.parametrize("percent", [0.2, 0.6, 0.9])
def test_magnitude_prunes_what_cifar_prune_prunes(percent):
    """cifar/weight-level/cifar_prune.py counts as vggprune.py does, over all conv weights."""
    rng = np.random.default_rng(3)
    ws = [rng.normal(size=s).astype(np.float32) for s in ((8, 3, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3))]
    ours, _, _ = magnitude_masks([torch.from_numpy(w) for w in ws], percent)
    theirs = vggprune(ws, percent)
    assert all((a == b).all() for a, b in zip(ours, theirs))


def test_lottery_rounds_prune_what_cifar_prune_iterative_prunes():
    rng = np.random.default_rng(5)
    ws = [rng.normal(size=s).astype(np.float32) for s in ((16, 3, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3))]
    ours = theirs = None
    for _ in range(4):  # each round on the same trained weights (only the count rule is compared)
        ours, _, clamped = prune_alive([torch.from_numpy(w) for w in ws], ours, 0.2)
        theirs = cifar_prune_iterative(ws, theirs, 0.2)
        assert not clamped and all((a == b).all() for a, b in zip(ours, theirs))
