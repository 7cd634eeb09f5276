"""Proposers: pruning methods run as architecture proposers.

One module per method, one registry by name (`slimming`, `magnitude`). A proposer
trains the base net of a target (through `archsearch.train.train`, so progress,
checkpoints and resume come for free), prunes it, and returns a `Pruned`: the pruned
`ArchSpec` plus the inherited weights (for the fine-tune baseline).

`propose()` wraps that in a run directory per (settings, seed):

    WORKDIR/<proposer>/<settings-key>/seed<N>/
        base/            the base net's training run (checkpoint.pt, model.pt, result.json)
        spec.json        the proposed (pruned) ArchSpec
        pruned_model.pt  the kept weights
        proposal.json    accuracies, threshold, clamped layers, settings; written last

A finished run (proposal.json present, same settings) is reused; an interrupted one
resumes from the base run's last checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from .. import __version__
from .._io import read_json, torch_save, write_json
from ..archs import base_spec, build
from ..data import Dataset
from ..errors import ArchsearchError
from ..names import ProposerName, parse_proposer
from ..spec import ArchSpec
from ..train import EpochStats, Schedule, evaluate, make_schedule, train

PROPOSERS: dict[str, "Proposer"] = {}


@dataclass
class Pruned:
    spec: ArchSpec
    state: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)


class Proposer:
    name: ClassVar[str]
    kind: ClassVar[str]  # "channels" (structured) or "sparsity" (unstructured)
    default_ratio: ClassVar[float]
    about: ClassVar[str] = ""

    def sparsity(self, family: str) -> float:
        """The BN-gamma L1 strength s used while training the base (0 = plain training)."""
        return 0.0

    def prune(self, model: nn.Module, base: ArchSpec, ratio: float, floor: float) -> Pruned:
        raise NotImplementedError


def prune_smallest(values: list[torch.Tensor], ratio: float) -> tuple[list[torch.Tensor], float]:
    """One global threshold over |values| of all tensors: exactly round(ratio x total)
    entries with the smallest magnitude are pruned, ties broken by position (so the
    prune count is exact). Returns boolean keep masks shaped like `values` and the
    threshold (the largest pruned magnitude; 0 if nothing is pruned)."""
    flat = torch.cat([v.detach().abs().flatten().float().cpu() for v in values])
    n_prune = int(round(ratio * len(flat)))
    order = torch.argsort(flat, stable=True)
    keep = torch.ones(len(flat), dtype=torch.bool)
    keep[order[:n_prune]] = False
    threshold = float(flat[order[n_prune - 1]]) if n_prune > 0 else 0.0
    return [k.reshape(v.shape) for k, v in zip(keep.split([v.numel() for v in values]), values)], threshold


def register_proposer(cls: type[Proposer]) -> type[Proposer]:
    PROPOSERS[cls.name] = cls()
    return cls


def get_proposer(method: str) -> Proposer:
    try:
        return PROPOSERS[method]
    except KeyError:
        raise ArchsearchError(f"unknown pruning method {method!r}; known: {', '.join(PROPOSERS)}") from None


def parse(name: str) -> ProposerName:
    """'slimming-vgg16-c10' -> ProposerName (the one parser, with this registry's methods)."""
    return parse_proposer(name, PROPOSERS)


@dataclass
class Settings:
    """Everything that decides a proposal; its hash names the run directory."""

    proposer: str
    ratio: float
    preset: str
    width: float
    floor: float
    sparsity: float
    schedule: dict
    train_subset: int | None = None  # a class-stratified subset of the training images (reduced scale)

    def record(self) -> dict:
        """The settings as recorded and hashed; `train_subset` only when set, so runs made
        before it existed keep their keys."""
        d = asdict(self)
        if d["train_subset"] is None:
            del d["train_subset"]
        return d

    def key(self) -> str:
        h = hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:8]
        return f"r{self.ratio:g}-{self.preset}-w{self.width:g}-e{self.schedule['epochs']}-{h}"


@dataclass
class Proposal:
    proposer: str
    method: str
    kind: str
    seed: int
    settings: dict
    spec: ArchSpec
    base_spec: ArchSpec
    base_acc: float
    base_final_acc: float
    pruned_acc: float
    info: dict
    run_dir: str
    base_epochs: int
    base_seconds: float
    device: str
    torch_version: str
    archsearch_version: str
    date: str
    reused: bool = False

    def record(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("spec", "base_spec", "reused")}
        return d


def resolve_settings(name: str, *, ratio: float | None = None, preset: str = "fast", width: float | None = None,
                     epochs: int | None = None, sparsity: float | None = None, floor: float = 0.0,
                     batch_size: int | None = None, train_subset: int | None = None,
                     ) -> tuple[ProposerName, Proposer, Settings, Schedule, ArchSpec]:
    """Resolve a proposal's settings. With `sparsity` unset, the method's own L1 strength
    is used unchanged (s = 1e-4 for VGG), also at reduced scale: scaling s up for short
    runs was tried and collapses every BN scale to 0 (a 12-epoch digits run at the
    "same total L1 push" as the paper's 160 epochs trained to chance level)."""
    from ..train import get_preset

    pn = parse(name)
    prop = get_proposer(pn.method)
    ratio = prop.default_ratio if ratio is None else ratio
    if not 0.0 < ratio < 1.0:
        raise ArchsearchError(f"prune ratio must be between 0 and 1 (exclusive), got {ratio}")
    if not 0.0 <= floor < 1.0:
        raise ArchsearchError(f"floor must be a fraction in [0, 1), got {floor}")
    width = get_preset(preset).width if width is None else width
    base = base_spec(pn.target.arch, pn.target.num_classes, width=width)
    s = prop.sparsity(base.family) if sparsity is None else sparsity
    if not 0 <= s <= 1:  # also refuses NaN, before any training
        raise ArchsearchError(f"sparsity s must be in [0, 1], got {s}")
    if train_subset is not None and not 1 <= train_subset <= 1 << 31:
        raise ArchsearchError(f"a training subset must be a positive number of images, got {train_subset}")
    schedule = make_schedule(preset, epochs=epochs, bn_l1=s, batch_size=batch_size)
    settings = Settings(str(pn), ratio, preset, width, floor, s, schedule.to_dict(), train_subset)
    return pn, prop, settings, schedule, base


def run_dir(pn: ProposerName, settings: Settings, workdir: str | os.PathLike, seed: int) -> Path:
    return Path(workdir) / str(pn) / settings.key() / f"seed{seed}"


def finished(run: Path, settings: Settings) -> dict | None:
    """The record of a finished proposal run with these settings, or None."""
    from ..schemas import ProposalRecord, check

    if not (run / "proposal.json").exists():
        return None
    try:
        rec = check(ProposalRecord, read_json(run / "proposal.json", "proposal"), str(run / "proposal.json"))
    except ArchsearchError:
        return None  # damaged: the pruning step is redone (the base run is reused)
    d = rec.model_dump()
    return d if d["settings"] == settings.record() else None


def propose(name: str, data: Dataset, *, seed: int = 0, workdir: str | os.PathLike = "runs/proposals",
            device: str = "auto", progress: Callable[[EpochStats], None] | None = None,
            checkpoint_every: int = 5, **kw) -> Proposal:
    """Run (or reuse, or resume) the proposal of `name` (e.g. 'slimming-vgg16-c10') for one seed.

    Keyword settings: ratio, preset, width, epochs, sparsity, floor, batch_size, train_subset
    (the base net then trains on that class-stratified subset of `data`; its test set is whole).
    """
    from ..data import subset_train

    pn, prop, settings, schedule, base = resolve_settings(name, **kw)
    if data.name != pn.target.data:
        raise ArchsearchError(f"{name} proposes on {pn.target.data}, but the data given is {data.name}")
    data = subset_train(data, settings.train_subset)
    run = run_dir(pn, settings, workdir, seed)
    rec = finished(run, settings)
    if rec is not None:
        try:
            return Proposal(**rec, spec=ArchSpec.load(run / "spec.json"), base_spec=base, reused=True)
        except (TypeError, ArchsearchError):
            pass  # a damaged run: redo the pruning step (the base run is reused)
    result = train(base, data, schedule, seed=seed, device=device, out_dir=run / "base", progress=progress,
                   checkpoint_every=checkpoint_every)
    model = build(base)
    model.load_state_dict(torch.load(run / "base" / "model.pt", map_location="cpu", weights_only=True))
    pruned = prop.prune(model, base, settings.ratio, settings.floor)
    pruned.spec.meta = {"origin": "pruned", "proposer": str(pn), "ratio": settings.ratio, "seed": seed,
                        "preset": settings.preset, "width": settings.width, "epochs": schedule.epochs,
                        "archsearch_version": __version__}
    pruned_acc = evaluate(pruned.spec, pruned.state, data, device)
    prop_rec = Proposal(
        proposer=str(pn), method=prop.name, kind=prop.kind, seed=seed, settings=settings.record(),
        spec=pruned.spec, base_spec=base, base_acc=result.best_acc, base_final_acc=result.final_acc,
        pruned_acc=pruned_acc, info=pruned.info, run_dir=str(run), base_epochs=result.epochs,
        base_seconds=result.train_seconds, device=result.device_name, torch_version=torch.__version__,
        archsearch_version=__version__,
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    pruned.spec.save(run / "spec.json")
    torch_save(pruned.state, run / "pruned_model.pt")
    write_json(run / "proposal.json", prop_rec.record())  # last: marks the run complete
    return prop_rec


from . import magnitude, slimming  # noqa: E402,F401  (register the proposers)
