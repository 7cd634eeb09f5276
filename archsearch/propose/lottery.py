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
proposal resumes in its last unfinished round. `--rewind-epoch k` rewinds to the weights
after epoch k of the first round instead of the initialisation ("late resetting",
Frankle et al. 2019, "Stabilizing the Lottery Ticket Hypothesis"): the first round keeps a
snapshot of that epoch, and every later round starts from it at epoch k of the schedule
and trains the remaining epochs; its ticket is then that snapshot under the mask. The
structured lottery of
`cifar/lottery-ticket/l1-norm-pruning` (one L1-norm pruning, then training the kept
filters from their initial weights) needs no method of its own: every channel proposal
(`l1norm-resnet56-c10.A`, ...) keeps its `ticket_init.pt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._io import load_state, torch_save
from ..archs import build_with, get_family
from ..errors import ArchsearchError
from ..train import TrainHook, train
from .allocation import Rounds
from .base import Pruned, Proposer, initial_state, register_proposer
from .magnitude import Magnitude, masked_proposal, score_masks
from .options import RoundsOptions, default


def prune_alive(weights: list[torch.Tensor], masks: list[np.ndarray] | None, ratio: float
                ) -> tuple[list[np.ndarray], float, list[int]]:
    """Prune `ratio` of the weights still alive (all of them when `masks` is None): the
    dead ones first, then int(alive x ratio) + 1 of the smallest |w| among the living, by one
    global threshold; no conv is emptied. `cifar_prune_iterative.py` keeps the weights above
    `y[thre_index]`, `thre_index = total - total_nonzero + int(total_nonzero * percent)`, so
    the weight at `thre_index` goes too: one more than int(alive x ratio).
    Returns (masks, threshold, clamped convs)."""
    scores = [w.detach().abs().float().cpu() for w in weights]
    if masks is not None:
        scores = [torch.where(torch.from_numpy(m), s, torch.full_like(s, -1.0)) for s, m in zip(scores, masks)]
    total = sum(s.numel() for s in scores)
    alive = total if masks is None else int(sum(m.sum() for m in masks))
    return score_masks(scores, ratio, n_prune=(total - alive) + int(alive * ratio) + 1)


def under_mask(state: dict[str, torch.Tensor], names: list[str], masks: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """`state` with each named conv's weight zeroed outside its mask, and the mask buffers a
    masked net carries (`weight_mask`)."""
    out = {k: v.detach().clone() for k, v in state.items() if not k.endswith(".weight_mask")}
    for n, m in zip(names, masks):
        mt = torch.from_numpy(m)
        out[f"{n}.weight"] = out[f"{n}.weight"] * mt.to(out[f"{n}.weight"].dtype)
        out[f"{n}.weight_mask"] = mt.float()
    return out


class Snapshot(TrainHook):
    """Keeps the model's weights after epoch `epoch` (1-based) in `path`."""

    def __init__(self, epoch: int, path: Path):
        self.epoch, self.path = int(epoch), Path(path)

    def key(self) -> dict:
        return {"snapshot_epoch": self.epoch}

    def epoch_end(self, model, epoch: int) -> None:
        if epoch + 1 == self.epoch:
            torch_save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, self.path)


@dataclass(frozen=True)
class LotteryOptions(RoundsOptions):
    # per round, Frankle & Carbin's conv rate range; 5 rounds -> 67% sparse
    ratio: float = default("ratio", 0.2, help="Prune ratio per round: the share of the surviving conv weights "
                                              "removed.")


@register_proposer
class Lottery(Proposer):
    name = "lottery"
    kind = "sparsity"
    about = "lottery tickets: iterative magnitude pruning with rewinding to the initial weights (Frankle & Carbin 2019)"
    options = LotteryOptions
    finetune = Magnitude.finetune  # weight-level: the weight-level scripts' fine-tuning
    allocation = Rounds()

    def run(self, base, data, settings, schedule, run: Path, *, seed, device, progress, checkpoint_every, base_dir):
        names = [c.name for c in get_family(base.family).convs(base)]
        init = initial_state(base, seed)
        torch_save(init, run / "init.pt")
        k = settings.rewind_epoch or 0
        masks, base_result, history, rewind = None, None, [], init
        label = getattr(progress, "label", None)
        for r in range(settings.rounds):
            if label is not None:  # an EpochProgress: say which round its epochs belong to
                progress.label = f"{label} round {r + 1}/{settings.rounds}"
            spec = base if masks is None else base.replace(masks=dict(zip(names, masks)), meta={})
            start = None if masks is None else under_mask(rewind, names, masks)  # rewind the survivors
            # round 0 is the plain base net, shared (with a snapshot of epoch k when rewinding there)
            out = (base_dir if not k else run / "round0") if r == 0 else run / f"round{r}"
            hooks = self.hooks(base, settings) + ([Snapshot(k, run / "rewind.pt")] if k and r == 0 else [])
            result = train(spec, data, schedule, seed=seed, device=device, out_dir=out,
                           progress=progress, checkpoint_every=checkpoint_every, init_state=start,
                           hooks=hooks, start_epoch=k if r else 0)
            if r == 0 and k:
                if not (run / "rewind.pt").exists():
                    raise ArchsearchError(f"{run / 'rewind.pt'} (the weights after epoch {k}) is missing; "
                                          f"delete {out} to train the first round again")
                rewind = load_state(run / "rewind.pt", "rewind weights", hint=f"delete {out} to train the first round again")
            base_result = base_result or result
            model = build_with(spec, load_state(out / "model.pt", "model"))
            modules = dict(model.named_modules())
            trained_density = 1.0 if masks is None else float(sum(m.sum() for m in masks) / sum(m.size for m in masks))
            masks, threshold, clamped = prune_alive([modules[n].weight for n in names], masks, settings.ratio)
            history.append({"round": r, "trained_density": round(trained_density, 6), "best_acc": result.best_acc,
                            "final_acc": result.final_acc, "seconds": round(result.train_seconds, 1)})
        ticket = under_mask(rewind, names, masks)
        torch_save(ticket, run / "ticket_init.pt")
        pruned = masked_proposal(model, base, masks, threshold, clamped)
        total = sum(m.size for m in masks)
        pruned.info.update(rounds=history, ratio_per_round=settings.ratio,
                           sparsity=round(1 - sum(int(m.sum()) for m in masks) / total, 6),
                           init="init.pt", ticket_init="ticket_init.pt", rewind_epoch=k)
        return pruned, base_result

    def prune(self, model, base, settings) -> Pruned:  # one round on a trained net (the schedule is `run`)
        names = [c.name for c in get_family(base.family).convs(base)]
        modules = dict(model.named_modules())
        return masked_proposal(model, base, *prune_alive([modules[n].weight for n in names], None, settings.ratio))
