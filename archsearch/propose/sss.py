"""Sparse Structure Selection (Huang & Wang, ECCV 2018) as an architecture proposer: a depth
pattern.

While the base net trains, each residual block's branch output is multiplied by a scale
factor lambda (initialised to 1), and an L1 penalty gamma x sign(lambda) is added to its
gradient after every backward pass (the regulariser hook; the original uses an accelerated
proximal gradient step, which reaches exact zeros, where this subgradient step only drives
lambda small, so blocks are then removed by rank). Then the `ratio` share of the removable
blocks with the smallest |lambda| is removed, over the whole net (one global threshold). A
block that strides or widens the stream has no identity stand-in and always stays (the
original's "first block of a stage" corner case, `imagenet/sparse-structure-selection`).
The kept blocks' lambda is folded into the branch's last layer, so the inherited weights
compute what the trained net computed without its removed blocks.

The pattern is a depth pattern: per stage, the share of removable blocks kept. gamma
defaults to 1e-3 (`--sparsity`): the paper tuned it on ImageNet and gives no CIFAR value,
so this default is a choice, not a citation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._io import load_state
from ..archs import build, get_family
from ..errors import ArchsearchError
from ..spec import ArchSpec
from ..train import TrainHook, train
from .allocation import BlockRemoval
from .base import Pruned, Proposer, Settings, register_proposer
from .options import Options, default

SCALE = "sss_scale"  # the parameter name on each branch module


class BlockScales(TrainHook):
    """A scale factor on each named residual branch (a parameter on the branch's last module,
    applied by a forward hook) with the L1 subgradient gamma x sign(lambda) after backward."""

    def __init__(self, branches: list[str], gamma: float):
        self.branches, self.gamma = list(branches), float(gamma)
        self.scales: list[nn.Parameter] = []

    def key(self) -> dict:
        return {"sss_gamma": self.gamma, "blocks": len(self.branches)}

    def attach(self, model: nn.Module) -> None:
        modules = dict(model.named_modules())
        self.scales = []
        for name in self.branches:
            m = modules[name]
            if not hasattr(m, SCALE):  # once per model
                p = next(m.parameters())
                m.register_parameter(SCALE, nn.Parameter(torch.ones(1, device=p.device, dtype=p.dtype)))
                m.register_forward_hook(lambda mod, inp, out: out * getattr(mod, SCALE))
            self.scales.append(getattr(m, SCALE))

    def after_backward(self, model: nn.Module) -> None:
        if self.gamma:
            for p in self.scales:
                if p.grad is not None:
                    p.grad.add_(torch.sign(p.detach()) * self.gamma)


def fold_scales(state: dict[str, torch.Tensor], branches: list[str]) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The trained state without the scale parameters, each folded into its branch module's
    weight (and bias): a branch whose output is lambda x f(x) becomes one computing it."""
    out = {k: v for k, v in state.items() if not k.endswith(f".{SCALE}")}
    lams = []
    for b in branches:
        lam = state[f"{b}.{SCALE}"].detach().reshape(())
        lams.append(float(lam))
        for k in ("weight", "bias"):
            if f"{b}.{k}" in out:
                w = out[f"{b}.{k}"]
                out[f"{b}.{k}"] = w * lam.to(w.dtype)
    return out, lams


@dataclass(frozen=True)
class SSSOptions(Options):
    ratio: float = default("ratio", 0.3, help="Prune ratio: the share of the removable blocks removed.")
    sparsity: float | None = default("sparsity", 1e-3, help="gamma: the L1 strength on the blocks' scale factors "
                                                            "while the base net trains.")


@register_proposer
class SSS(Proposer):
    name = "sss"
    kind = "depth"
    about = "Sparse Structure Selection: L1-penalised scale factors on residual blocks, smallest blocks removed (Huang & Wang 2018)"
    families = ("resnet", "preresnet")
    options = SSSOptions
    allocation = BlockRemoval()

    def check_family(self, base: ArchSpec) -> None:
        super().check_family(base)
        layout = get_family(base.family).block_layout(base.depth)
        empty = sorted({b.stage for b in layout} - {b.stage for b in layout if b.removable})
        if empty:
            raise ArchsearchError(f"{base.name} has no removable block in stage(s) {', '.join(str(s + 1) for s in empty)}; "
                                  "sss needs a deeper net")

    def hooks(self, base: ArchSpec, settings: Settings) -> list[TrainHook]:
        layout = get_family(base.family).block_layout(base.depth)
        return [BlockScales([b.branch for b in layout], settings.sparsity)]

    def run(self, base, data, settings, schedule, run, *, seed, device, progress, checkpoint_every, base_dir):
        result = train(base, data, schedule, seed=seed, device=device, out_dir=base_dir, progress=progress,
                       checkpoint_every=checkpoint_every, hooks=self.hooks(base, settings))
        trained = load_state(base_dir / "model.pt", "model")
        layout = get_family(base.family).block_layout(base.depth)
        state, lams = fold_scales(trained, [b.branch for b in layout])
        model = build(base)
        model.load_state_dict(state)
        return self.remove(model, base, settings.ratio, lams), result

    def remove(self, model: nn.Module, base: ArchSpec, ratio: float, lams: list[float]) -> Pruned:
        """Remove the `ratio` share of removable blocks with the smallest |lambda|."""
        layout = get_family(base.family).block_layout(base.depth)
        rem = [i for i, b in enumerate(layout) if b.removable]
        keep_rem, threshold = self.allocation.at([torch.tensor([abs(lams[i]) for i in rem])], ratio)
        keep = [True] * len(layout)
        for i, k in zip(rem, keep_rem[0].tolist()):
            keep[i] = bool(k)
        spec = base.replace(blocks=keep, meta={})
        prefixes = tuple(f"{b.name}." for b, k in zip(layout, keep) if not k)
        state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith(prefixes)}
        info = {"threshold": threshold, "scales": [round(v, 6) for v in lams], "blocks": [b.name for b in layout],
                "removed": [b.name for b, k in zip(layout, keep) if not k], "removable": [layout[i].name for i in rem]}
        return Pruned(spec, state, info)

    def prune(self, model: nn.Module, base: ArchSpec, settings: Settings) -> Pruned:
        """On a net trained without scale factors every lambda is 1: nothing to rank by."""
        raise ArchsearchError("sss ranks blocks by the scale factors it trains; run it through propose()")
