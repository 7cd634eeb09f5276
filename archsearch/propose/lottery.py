"""Lottery tickets (Frankle & Carbin, ICLR 2019) as an architecture proposer: iterative
magnitude pruning with rewinding, as `cifar/lottery-ticket/weight-level` of the rethinking
repository does it.

Round 0 trains the dense base net from its initialisation; every round then prunes `ratio`
of the conv weights still alive, by one global |w| threshold over all convs
(`cifar_prune_iterative.py`: `thre_index = total - total_nonzero + int(total_nonzero *
percent)`), rewinds the survivors to their initial values (`lottery_ticket.py` loads
`init.pth.tar` and zeroes the pruned weights) and trains again with the mask held. After
`rounds` prunings the sparsity is 1 - (1 - ratio)^rounds (up to the integer counts), which
takes `rounds` trainings: the last mask is not trained here, that is what the sweep's
lottery arm does, from the winning-ticket initialisation and from a fresh one.

The proposal is a sparsity pattern like magnitude pruning's; the run folder keeps the
initialisation (`init.pt`) and the winning ticket (`ticket_init.pt`: the initialisation
under the final mask). Round 0 is the shared plain base run; every later round is a
`train` run in `round<r>/`, so an interrupted
proposal resumes in its last unfinished round. The structured lottery of
`cifar/lottery-ticket/l1-norm-pruning` (one L1-norm pruning, then training the kept
filters from their initial weights) needs no method of its own: every channel proposal
(`l1norm-resnet56-c10.A`, ...) keeps its `ticket_init.pt`. Rewinding to an early epoch
instead of the initialisation (Frankle et al. 2019) is not here yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._io import torch_save
from ..archs import build, get_family
from ..train import train
from . import Pruned, Proposer, initial_state, register_proposer
from .allocation import global_threshold, keep_one
from .magnitude import masked_proposal


def prune_alive(weights: list[torch.Tensor], masks: list[np.ndarray] | None, ratio: float
                ) -> tuple[list[np.ndarray], float, list[int]]:
    """Prune `ratio` of the weights still alive (all of them when `masks` is None): the
    dead ones first, then int(alive x ratio) of the smallest |w| among the living, by one
    global threshold; no conv is emptied. Returns (masks, threshold, clamped convs)."""
    scores = [w.detach().abs().float().cpu() for w in weights]
    if masks is not None:
        scores = [torch.where(torch.from_numpy(m), s, torch.full_like(s, -1.0)) for s, m in zip(scores, masks)]
    total = sum(s.numel() for s in scores)
    alive = total if masks is None else int(sum(m.sum() for m in masks))
    n_prune = (total - alive) + int(alive * ratio)
    keeps, threshold = global_threshold(scores, n_prune / total)
    clamped = keep_one(keeps, scores)
    return [k.numpy() for k in keeps], threshold, clamped


def under_mask(state: dict[str, torch.Tensor], names: list[str], masks: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """`state` with each named conv's weight zeroed outside its mask, and the mask buffers a
    masked net carries (`weight_mask`)."""
    out = {k: v.detach().clone() for k, v in state.items() if not k.endswith(".weight_mask")}
    for n, m in zip(names, masks):
        mt = torch.from_numpy(m)
        out[f"{n}.weight"] = out[f"{n}.weight"] * mt.to(out[f"{n}.weight"].dtype)
        out[f"{n}.weight_mask"] = mt.float()
    return out


@register_proposer
class Lottery(Proposer):
    name = "lottery"
    kind = "sparsity"
    default_ratio = 0.2  # per round, Frankle & Carbin's conv rate range; 5 rounds -> 67% sparse
    about = "lottery tickets: iterative magnitude pruning with rewinding to the initial weights (Frankle & Carbin 2019)"
    iterative = True
    default_rounds = 5

    def run(self, base, data, settings, schedule, run: Path, *, seed, device, progress, checkpoint_every, base_dir):
        names = [c.name for c in get_family(base.family).convs(base)]
        init = initial_state(base, seed)
        torch_save(init, run / "init.pt")
        masks, base_result, history = None, None, []
        label = getattr(progress, "label", None)
        for r in range(settings.rounds):
            if label is not None:  # an EpochProgress: say which round its epochs belong to
                progress.label = f"{label} round {r + 1}/{settings.rounds}"
            spec = base if masks is None else base.replace(masks=dict(zip(names, masks)), meta={})
            start = None if masks is None else under_mask(init, names, masks)  # rewind the survivors
            out = base_dir if r == 0 else run / f"round{r}"  # round 0 is the plain base net, shared
            result = train(spec, data, schedule, seed=seed, device=device, out_dir=out,
                           progress=progress, checkpoint_every=checkpoint_every, init_state=start,
                           hooks=self.hooks(base, settings))
            base_result = base_result or result
            model = build(spec)
            model.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))
            modules = dict(model.named_modules())
            trained_density = 1.0 if masks is None else float(sum(m.sum() for m in masks) / sum(m.size for m in masks))
            masks, threshold, clamped = prune_alive([modules[n].weight for n in names], masks, settings.ratio)
            history.append({"round": r, "trained_density": round(trained_density, 6), "best_acc": result.best_acc,
                            "final_acc": result.final_acc, "seconds": round(result.train_seconds, 1)})
        ticket = under_mask(init, names, masks)
        torch_save(ticket, run / "ticket_init.pt")
        pruned = masked_proposal(model, base, masks, threshold, clamped)
        total = sum(m.size for m in masks)
        pruned.info.update(rounds=history, ratio_per_round=settings.ratio,
                           sparsity=round(1 - sum(int(m.sum()) for m in masks) / total, 6),
                           init="init.pt", ticket_init="ticket_init.pt")
        return pruned, base_result

    def prune(self, model, base, settings) -> Pruned:  # one round on a trained net (the schedule is `run`)
        names = [c.name for c in get_family(base.family).convs(base)]
        modules = dict(model.named_modules())
        return masked_proposal(model, base, *prune_alive([modules[n].weight for n in names], None, settings.ratio))
