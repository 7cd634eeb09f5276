"""Proposers: pruning methods run as architecture proposers.

One module per method, one registry by name: `slimming`, `magnitude`, `lamp`, `l1norm`,
`thinet`, `regression`, `sfp`, `lottery`, `sss`. A method is three parts (Torch-Pruning's
split):
- an *importance* criterion (`importance.py`: BN scale, filter norm, |w|, LAMP; the
  reconstruction criteria of ThiNet and regression in `reconstruct.py`);
- an *allocation* (`allocation.py`: one global threshold, or predefined per-layer ratios
  with skip lists; SSS removes blocks);
- a *schedule* (`Proposer.run`): what it does while the base net trains (`Proposer.hooks`:
  `TrainHook`s the trainer calls, e.g. Network Slimming's BN-L1 after every backward pass),
  then a one-shot `prune` of the trained net, or rounds of pruning and retraining (lottery).
A proposer trains the base net of a target (through `archsearch.train.train`, so progress,
checkpoints and resume come for free), prunes it, and returns a `Pruned`: the pruned
`ArchSpec` plus the inherited weights (for the fine-tune baseline).

`propose()` wraps that in a run directory per (settings, seed):

    WORKDIR/<proposer>/<settings-key>/seed<N>/
        spec.json        the proposed (pruned) ArchSpec
        pruned_model.pt  the kept weights
        ticket_init.pt   channel proposals, the lottery: the winning-ticket initialisation
        proposal.json    accuracies, threshold, clamped layers, settings; written last

and the base net's training run (checkpoint.pt, model.pt, result.json) in

    WORKDIR/_base/<arch>-<data>-<base-key>/seed<N>/

keyed by what decides the trained base net alone (its spec, schedule, training hooks,
training subset, data): methods that train the base plainly (l1norm with both its variants,
magnitude, lamp, thinet, regression, the lottery's first round) share one base net per seed
instead of training it again. A finished proposal (proposal.json present, same settings)
is reused; an interrupted one resumes from the base run's last checkpoint.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from .. import __version__
from .._io import RunInUse, RunLock, load_state, read_json, torch_save, write_json
from ..archs import build, build_with
from ..data import Dataset
from ..config import DEFAULT_PRESET
from ..config import resolve as resolve_config
from ..errors import ArchsearchError
from ..names import ProposerName, parse_proposer
from ..spec import ArchSpec
from ..train import BNL1, EpochStats, Schedule, TrainHook, evaluate, make_schedule, train

PROPOSERS: dict[str, "Proposer"] = {}


@dataclass
class Pruned:
    spec: ArchSpec
    state: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    keep: list | None = None  # channel proposals: the kept channels of each group (for the ticket init)


def initial_state(base: ArchSpec, seed: int) -> dict[str, torch.Tensor]:
    """The weights `train` starts `base` from with this seed (it seeds, then builds)."""
    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in build(base).state_dict().items()}


def save_ticket(pruned: Pruned, base: ArchSpec, seed: int, run: Path) -> None:
    """A channel proposal's winning-ticket initialisation (the structured lottery of
    `cifar/lottery-ticket/l1-norm-pruning`): the base net's initial weights, narrowed to the
    channels the proposal kept, in `run/ticket_init.pt`."""
    from ..archs import get_family

    if pruned.keep is None:
        return
    init = build(base)
    init.load_state_dict(initial_state(base, seed))
    _, state = get_family(base.family).narrow(init, base, pruned.keep)
    torch_save(state, run / "ticket_init.pt")
    pruned.info["ticket_init"] = "ticket_init.pt"


class Proposer:
    name: ClassVar[str]
    kind: ClassVar[str]  # "channels" (structured), "sparsity" (unstructured) or "depth" (blocks kept)
    default_ratio: ClassVar[float]
    about: ClassVar[str] = ""
    families: ClassVar[tuple[str, ...] | None] = None  # None: every family
    allocation: ClassVar[str] = "global"  # "global" (one threshold at `ratio`) or "per-layer" (predefined ratios)
    iterative: ClassVar[bool] = False  # prunes over `rounds` (Settings.rounds), `ratio` per round
    data_aware: ClassVar[bool] = False  # `prune` also reads training data (sampled activations)
    default_rounds: ClassVar[int] = 1

    def sparsity(self, family: str) -> float:
        """The BN-gamma L1 strength s used while training the base (0 = plain training)."""
        return 0.0

    def check_family(self, base: ArchSpec) -> None:
        """Refuse, in one line and before any training, a family this method does not apply to."""
        if self.families is not None and base.family not in self.families:
            raise ArchsearchError(f"{self.name} does not apply to the {base.family} family "
                                  f"(it supports: {', '.join(self.families)})")

    def layer_ratios(self, base: ArchSpec, variant: str | None, ratio: float | None,
                     stage_ratios: list[float] | None, skip: list[str] | None) -> list[float]:
        """Per-layer allocation: one prune ratio per channel group (`--ratio`, `--stage-ratios`,
        `--skip`); a method with named configurations overrides it."""
        from .allocation import predefined_ratios

        if variant is not None:
            raise ArchsearchError(f"{self.name} has no named variants (got {variant!r})")
        return predefined_ratios(base, self.name, self.default_ratio, ratio, stage_ratios, skip)

    def hooks(self, base: ArchSpec, settings: "Settings") -> list[TrainHook]:
        """What acts while the base net trains: BN-L1 at the settings' s when s > 0."""
        return [BNL1(settings.sparsity)] if settings.sparsity else []

    def prune(self, model: nn.Module, base: ArchSpec, settings: "Settings") -> Pruned:
        raise NotImplementedError

    def run(self, base: ArchSpec, data: Dataset, settings: "Settings", schedule: Schedule, run: Path, *, seed: int,
            device: str, progress: Callable[[EpochStats], None] | None, checkpoint_every: int, base_dir: Path):
        """The schedule: train the base net once in `base_dir` (with this method's hooks), then
        prune it into the proposal's `run` folder. Returns (Pruned, the base run's Result).
        Iterative methods override it; every training goes through `train(out_dir=...)`, so
        an interrupted run resumes."""
        result = train(base, data, schedule, seed=seed, device=device, out_dir=base_dir, progress=progress,
                       checkpoint_every=checkpoint_every, hooks=self.hooks(base, settings))
        model = build_with(base, load_state(base_dir / "model.pt", "model"))
        pruned = self.prune(model, base, settings, data) if self.data_aware else self.prune(model, base, settings)
        save_ticket(pruned, base, seed, run)
        return pruned, result


def channel_proposal(model: nn.Module, base: ArchSpec, keep: list, *, threshold: float | None = None,
                     clamped: list[dict] | tuple = (), **info) -> Pruned:
    """The channel-pruned net of `keep` (one mask per channel group): its spec, the inherited
    weights (`Family.narrow`) and the pattern's facts."""
    from ..archs import get_family

    fam = get_family(base.family)
    spec, state = fam.narrow(model, base, keep)
    names = [g.name for g in fam.groups(base)]
    clamped = [{**c, "group": names[c["layer"]]} for c in clamped]
    info = {"threshold": threshold, "clamped": clamped, **info,
            "pruned_channels": int(sum(len(k) - k.sum() for k in keep)),
            "total_channels": int(sum(len(k) for k in keep))}
    return Pruned(spec.replace(base_widths=base.widths), state, info, keep=[np.asarray(k, dtype=bool) for k in keep])


def register_proposer(cls: type[Proposer]) -> type[Proposer]:
    PROPOSERS[cls.name] = cls()
    return cls


def get_proposer(method: str) -> Proposer:
    try:
        return PROPOSERS[method]
    except KeyError:
        raise ArchsearchError(f"unknown pruning method {method!r}; known: {', '.join(PROPOSERS)}") from None


def parse(name: str) -> ProposerName:
    """'slimming-vgg16-c10' or 'l1norm-resnet56-c10.A' -> ProposerName (the one parser, with
    this registry's methods)."""
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
    layer_ratios: list[float] | None = None  # per-layer allocation: one prune ratio per channel group
    rounds: int | None = None  # iterative methods (lottery): prune-and-rewind rounds, `ratio` pruned per round
    rewind_epoch: int | None = None  # the lottery: rewind to the weights after this epoch (None: the initialisation)
    # data-aware methods: how groups are judged; "sequential" (each on the partly pruned net).
    # Proposals made before it existed were judged in one pass and are not reused for it.
    selection: str | None = None

    def record(self) -> dict:
        """The settings as recorded and hashed; the optional ones only when set, so runs made
        before they existed keep their keys."""
        d = asdict(self)
        for k in ("train_subset", "layer_ratios", "rounds", "rewind_epoch", "selection"):
            if d[k] is None:
                del d[k]
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


def resolve_settings(name: str, *, ratio: float | None = None, preset: str = DEFAULT_PRESET, width: float | None = None,
                     epochs: int | None = None, sparsity: float | None = None, floor: float = 0.0,
                     batch_size: int | None = None, train_subset: int | None = None, variant: str | None = None,
                     stage_ratios: list[float] | None = None, skip: list[str] | None = None,
                     rounds: int | None = None, rewind_epoch: int | None = None,
                     ) -> tuple[ProposerName, Proposer, Settings, Schedule, ArchSpec]:
    """Resolve a proposal's settings. With `sparsity` unset, the method's own L1 strength
    is used unchanged (s = 1e-4 for VGG), also at reduced scale: scaling s up for short
    runs was tried and collapses every BN scale to 0 (a 12-epoch digits run at the
    "same total L1 push" as the paper's 160 epochs trained to chance level)."""
    pn = parse(name)
    if variant is not None:
        if pn.variant is not None and pn.variant != variant:
            raise ArchsearchError(f"{name} names variant {pn.variant}, but --variant says {variant}")
        if pn.variant is None:
            pn = parse(f"{pn}.{variant}")
    prop = get_proposer(pn.method)
    if not 0.0 <= floor < 1.0:
        raise ArchsearchError(f"floor must be a fraction in [0, 1), got {floor}")
    width = resolve_config(preset, width=width).width  # the one resolution of a preset (archsearch.config)
    base = pn.target.base_spec(width)
    prop.check_family(base)
    layer_ratios = None
    if prop.allocation == "per-layer":
        from .allocation import allocated_ratio

        layer_ratios = prop.layer_ratios(base, pn.variant, ratio, stage_ratios, skip)
        ratio = allocated_ratio(base, layer_ratios)
    elif pn.variant is not None or stage_ratios is not None or skip is not None:
        what = "variants" if pn.variant is not None else "--stage-ratios" if stage_ratios is not None else "--skip"
        raise ArchsearchError(f"{prop.name} prunes by one global threshold; {what} belong to predefined-ratio "
                              "methods (l1norm)")
    ratio = prop.default_ratio if ratio is None else ratio
    if not 0.0 < ratio < 1.0:
        raise ArchsearchError(f"prune ratio must be between 0 and 1 (exclusive), got {ratio}")
    s = prop.sparsity(base.family) if sparsity is None else sparsity
    if not 0 <= s <= 1:  # also refuses NaN, before any training
        raise ArchsearchError(f"sparsity s must be in [0, 1], got {s}")
    if train_subset is not None and not 1 <= train_subset <= 1 << 31:
        raise ArchsearchError(f"a training subset must be 1 to {1 << 31} images (a number at or above the training "
                              f"set's size uses all of it), got {train_subset}")
    schedule = make_schedule(preset, epochs=epochs, batch_size=batch_size)
    if prop.iterative:
        rounds = prop.default_rounds if rounds is None else rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 100:
            raise ArchsearchError(f"{prop.name} needs 1 to 100 rounds of pruning, got {rounds!r}")
    elif rounds is not None or rewind_epoch is not None:
        raise ArchsearchError(f"{prop.name} prunes once; --rounds and --rewind-epoch belong to iterative methods "
                              "(lottery)")
    if rewind_epoch is not None and schedule.epochs < 2:
        # late resetting rewinds to the weights after an epoch before a round's last (Frankle et al. 2019)
        raise ArchsearchError(f"--rewind-epoch {rewind_epoch}: rounds of {schedule.epochs} epoch are too short for "
                              "late resetting, which rewinds to an epoch before a round's last; train at least 2 "
                              "epochs (--epochs) or leave --rewind-epoch out")
    if rewind_epoch is not None and not (isinstance(rewind_epoch, int) and 1 <= rewind_epoch < schedule.epochs):
        raise ArchsearchError(f"--rewind-epoch must be an epoch from 1 to {schedule.epochs - 1}, before the last of a "
                              f"round's {schedule.epochs} epochs, got {rewind_epoch!r}")
    settings = Settings(str(pn), ratio, preset, width, floor, s, schedule.to_dict(), train_subset, layer_ratios, rounds,
                        rewind_epoch, "sequential" if prop.data_aware else None)
    return pn, prop, settings, schedule, base


def run_dir(pn: ProposerName, settings: Settings, workdir: str | os.PathLike, seed: int) -> Path:
    return Path(workdir) / str(pn) / settings.key() / f"seed{seed}"


def base_run_dir(workdir: str | os.PathLike, base: ArchSpec, data_name: str, schedule: Schedule,
                 hooks: list[TrainHook], train_subset: int | None, seed: int) -> Path:
    """Where the base net of a proposal trains: keyed by what decides it, not by the method."""
    ident = [base.identity(), schedule.to_dict(), [h.key() for h in hooks], train_subset, data_name]
    h = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Path(workdir) / "_base" / f"{base.name}-{data_name}-w{base.width:g}-e{schedule.epochs}-{h}" / f"seed{seed}"


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
            checkpoint_every: int | None = None, **kw) -> Proposal:
    """Run (or reuse, or resume) the proposal of `name` (e.g. 'slimming-vgg16-c10') for one seed.

    Keyword settings: ratio, preset, width, epochs, sparsity, floor, batch_size, train_subset,
    variant, stage_ratios, skip, rounds, rewind_epoch
    (the base net then trains on that class-stratified subset of `data`; its test set is whole).
    """
    from ..data import subset_train

    pn, prop, settings, schedule, base = resolve_settings(name, **kw)
    if checkpoint_every is None:
        checkpoint_every = resolve_config(settings.preset).checkpoint_every
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
    base_dir = base_run_dir(workdir, base, pn.target.data, schedule, prop.hooks(base, settings), settings.train_subset,
                            seed)
    run.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            pruned, result = prop.run(base, data, settings, schedule, run, seed=seed, device=device,
                                      progress=progress, checkpoint_every=checkpoint_every, base_dir=base_dir)
            break
        except RunInUse as e:
            # another process trains the same (shared) base net or round: wait for it, then
            # go on from what it wrote (a finished run is reused, an interrupted one resumed)
            print(f"{name} seed {seed}: waiting for {e.folder}, in use by another archsearch process",
                  file=sys.stderr, flush=True)
            with RunLock(e.folder, wait=True):
                pass
    pruned.spec.meta = {"origin": "pruned", "proposer": str(pn), "ratio": settings.ratio, "seed": seed,
                        "preset": settings.preset, "width": settings.width, "epochs": schedule.epochs,
                        "archsearch_version": __version__}
    pruned_acc = evaluate(pruned.spec, pruned.state, data, device, tta_flip=schedule.tta_flip)  # as base_acc was
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


from . import l1norm, lamp, lottery, magnitude, regression, sfp, slimming, sss, thinet  # noqa: E402,F401  (register the proposers)
