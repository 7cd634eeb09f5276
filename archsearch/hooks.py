"""What a pruning method does while a net trains, as hooks the trainer calls (the trainer has
no method of its own): Network Slimming's BN-L1 (`BNL1`, here), SSS's block-scale penalty
and SFP's per-epoch filter zeroing (with their proposers)."""

from __future__ import annotations

import torch
from torch import nn

from .errors import ArchsearchError


class TrainHook:
    """What a pruning method does while a net trains (the trainer has no method of its own).

    `attach` sees the model once, when it is built and on its device (a resumed run then
    loads its checkpoint into the same parameters); then
    `after_backward` runs after every backward pass, before the optimiser step (a
    regulariser's subgradient), and `epoch_end` after every epoch's training, before its
    evaluation (e.g. zeroing filters). `key()` names what the hook does, with its settings:
    it joins the run's fingerprint, so a checkpoint made with other hooks is never resumed."""

    def key(self) -> dict:
        raise NotImplementedError

    def attach(self, model: nn.Module) -> None:
        pass

    def after_backward(self, model: nn.Module) -> None:
        pass

    def epoch_end(self, model: nn.Module, epoch: int) -> None:
        pass


class BNL1(TrainHook):
    """Network Slimming's sparsity regulariser (Liu et al. 2017, Eq. 1 and Sec. 3.2): the L1
    subgradient s*sign(gamma) added to the gradient of every BatchNorm scale, as the
    original `updateBN()` does."""

    def __init__(self, s: float):
        if not (isinstance(s, (int, float)) and 0 <= s <= 1):
            raise ArchsearchError(f"sparsity s must be in [0, 1], got {s}")
        self.s = float(s)
        self.weights: list[torch.Tensor] = []

    def key(self) -> dict:
        return {"bn_l1": self.s}

    def attach(self, model: nn.Module) -> None:
        self.weights = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]

    def after_backward(self, model: nn.Module) -> None:
        ws = [w for w in self.weights if w.grad is not None]
        if self.s and ws:
            torch._foreach_add_([w.grad for w in ws], torch._foreach_mul(torch._foreach_sign(ws), self.s))


__all__ = ["TrainHook", "BNL1"]
