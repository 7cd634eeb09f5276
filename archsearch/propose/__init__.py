"""Proposers: pruning methods run as architecture proposers.

One module per method, one class per method, one registry by name (`base.PROPOSERS`, in the
order of the import line below, which help texts follow);
`base.describe` / `base.catalogue` give each method's kind, about text, default ratio and
options (with defaults and help texts) to the CLI and sweeps. A method is four parts
(Torch-Pruning's split):
- its typed *options* (`options.py`: one frozen dataclass per method; the defaults live there);
- an *importance* criterion (`importance.py`: BN scale, filter norm, |w|, LAMP; the
  reconstruction criteria of ThiNet and regression in `reconstruct.py`);
- an *allocation* it is given (`allocation.py`: one global threshold, predefined per-layer
  ratios with skip lists and variants, rounds, block removal), which decides the settings it
  takes and turns scores into keep masks;
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
is reused; an interrupted one resumes from the base run's last checkpoint. `trained_base`
gives that trained base net alone, from the same folder (`archsearch sensitivity`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import __version__
from .._io import RunInUse, RunLock, read_json, torch_save, write_json
from ..config import resolve as resolve_config
from ..data import Dataset, subset_train
from ..errors import ArchsearchError
from ..names import ProposerName
from ..result import Result
from ..schemas import ProposalRecord, check
from ..spec import ArchSpec
from ..train import EpochStats, Schedule, TrainHook, evaluate, make_schedule
from . import (l1norm, lamp, lottery, magnitude, regression, sfp, slimming, sss, thinet,  # noqa: F401  (register them)
               snip, grasp, synflow)
from .base import (PROPOSERS, MethodInfo, OptionInfo, Proposer, Pruned, Settings, catalogue, channel_proposal,
                   describe, get_proposer, initial_state, parse, register_proposer, save_ticket)
from .options import NAMED, Options, with_own

__all__ = ["NAMED", "PROPOSERS", "MethodInfo", "OptionInfo", "Options", "Proposal", "Proposer", "Pruned", "Settings",
           "base_run_dir", "catalogue", "channel_proposal", "describe", "finished", "get_proposer", "initial_state",
           "parse", "propose", "register_proposer", "resolve_settings", "run_dir", "save_ticket", "TrainedBase",
           "trained_base"]


@dataclass
class Proposal:
    proposer: str
    method: str
    kind: str
    seed: int
    settings: dict
    spec: ArchSpec
    base_spec: ArchSpec
    base_acc: float | None        # None: not tested (a method that trains nothing: `propose`)
    base_final_acc: float | None
    pruned_acc: float | None
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


def _with_variant(name: str, variant: str | None) -> ProposerName:
    """The proposer spec, with `variant` (an option) and the name's .VARIANT suffix agreeing."""
    pn = parse(name)
    if variant is not None and pn.variant is not None and pn.variant != variant:
        raise ArchsearchError(f"{name} names variant {pn.variant}, but --variant says {variant}")
    return parse(f"{pn}.{variant}") if variant is not None and pn.variant is None else pn


def resolve_settings(name: str, **kw: Any) -> tuple[ProposerName, Proposer, Settings, Schedule, ArchSpec]:
    """Resolve a proposal's settings from the method's options (`describe(method).options`:
    ratio, preset, width, epochs, sparsity, floor, batch_size, train_subset, and the method's
    own, e.g. variant, stage_ratios, skip, rounds, rewind_epoch; None means the default).
    With `sparsity` unset, the method's own L1 strength is used unchanged (s = 1e-4 for VGG),
    also at reduced scale: scaling s up for short runs was tried and collapses every BN scale
    to 0 (a 12-epoch digits run at the "same total L1 push" as the paper's 160 epochs trained
    to chance level)."""
    kw = with_own(kw, kw.pop("options", None))  # `options`: a method's own, by name (`--option`)
    pn = _with_variant(name, kw.get("variant"))
    prop = get_proposer(pn.method)
    given = {k for k, v in {**kw, "variant": pn.variant}.items() if v is not None}
    opts = prop.make_options(**{**kw, "variant": pn.variant})
    width = resolve_config(opts.preset, width=opts.width).width  # the one resolution of a preset (archsearch.config)
    base = pn.target.base_spec(width)
    prop.check_family(base)
    schedule = make_schedule(opts.preset, epochs=opts.epochs, batch_size=opts.batch_size)
    alloc = {"layer_ratios": None, "rounds": None, "rewind_epoch": None, "count_rule": None,
             **prop.allocation.resolve(prop.name, base, opts, given, schedule.epochs)}
    s = prop.default_sparsity(base.family) if opts.sparsity is None else opts.sparsity
    settings = Settings(str(pn), alloc["ratio"], opts.preset, width, opts.floor, s, schedule.to_dict(),
                        opts.train_subset, alloc["layer_ratios"], alloc["rounds"], alloc["rewind_epoch"],
                        "sequential" if prop.data_aware else None, opts.own(), alloc["count_rule"])
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
    if not (run / "proposal.json").exists():
        return None
    try:
        rec = check(ProposalRecord, read_json(run / "proposal.json", "proposal"), str(run / "proposal.json"))
    except ArchsearchError:
        return None  # damaged: the pruning step is redone (the base run is reused)
    d = rec.model_dump()
    return d if d["settings"] == settings.record() else None


def _waiting(label: str, work: Callable[[], Any]) -> Any:
    """`work()`; while another process trains the same (shared) base net or round, wait for it,
    then go on from what it wrote (a finished run is reused, an interrupted one resumed)."""
    while True:
        try:
            return work()
        except RunInUse as e:
            print(f"{label}: waiting for {e.folder}, in use by another archsearch process", file=sys.stderr, flush=True)
            with RunLock(e.folder, wait=True):
                pass


def _base_setup(name, data, pn, prop, settings, schedule, base, workdir, seed, checkpoint_every):
    """What `propose` and `trained_base` both need before any work: the data checked against the
    target and narrowed to the training subset, the base net's run folder, the checkpoint interval."""
    if checkpoint_every is None:
        checkpoint_every = resolve_config(settings.preset).checkpoint_every
    if data.name != pn.target.data:
        raise ArchsearchError(f"{name} proposes on {pn.target.data}, but the data given is {data.name}")
    data = subset_train(data, settings.train_subset)
    base_dir = base_run_dir(workdir, base, pn.target.data, schedule, prop.hooks(base, settings), settings.train_subset,
                            seed)
    return data, base_dir, checkpoint_every


@dataclass
class TrainedBase:
    """The trained base net of a proposer spec's proposals, for one seed."""

    proposer: ProposerName
    method: Proposer
    settings: Settings
    schedule: Schedule
    spec: ArchSpec
    model: nn.Module
    result: Result
    run_dir: Path


def trained_base(name: str, data: Dataset, *, seed: int = 0, workdir: str | os.PathLike = "runs/proposals",
                 device: str = "auto", progress: Callable[[EpochStats], None] | None = None,
                 checkpoint_every: int | None = None, **kw) -> TrainedBase:
    """The base net that `propose(name, ...)` prunes, trained, resumed or reused in the same
    folder (`WORKDIR/_base/...`), so neither retrains what the other trained. A method that
    trains no base net (at initialisation) or trains it its own way (rounds, block scales) is
    refused in one line."""
    pn, prop, settings, schedule, base = resolve_settings(name, **kw)
    if not prop.trains or type(prop).run is not Proposer.run:
        raise ArchsearchError(f"{prop.name} trains no single base net to prune once (it "
                              f"{'scores at initialisation' if not prop.trains else prop.allocation.about})")
    data, base_dir, checkpoint_every = _base_setup(name, data, pn, prop, settings, schedule, base, workdir, seed,
                                                   checkpoint_every)
    model, result = _waiting(f"{name} seed {seed}", lambda: prop.train_base(
        base, data, settings, schedule, seed=seed, device=device, progress=progress,
        checkpoint_every=checkpoint_every, base_dir=base_dir))
    return TrainedBase(pn, prop, settings, schedule, base, model, result, base_dir)


def propose(name: str, data: Dataset, *, seed: int = 0, workdir: str | os.PathLike = "runs/proposals",
            device: str = "auto", progress: Callable[[EpochStats], None] | None = None,
            checkpoint_every: int | None = None, test_untrained: bool = False, **kw) -> Proposal:
    """Run (or reuse, or resume) the proposal of `name` (e.g. 'slimming-vgg16-c10') for one seed.

    Keyword settings: the method's options (`resolve_settings`); with `train_subset`, the base
    net trains on that class-stratified subset of `data` (its test set stays whole).

    A method that trains nothing (SNIP, GraSP, SynFlow) is not tested unless `test_untrained`
    (a table sweep): its nets are untrained, at chance, and the test passes would be most of its
    cost (minutes for a CIFAR VGG-16 at width 1, against seconds of scoring); accuracies None."""
    pn, prop, settings, schedule, base = resolve_settings(name, **kw)
    data, base_dir, checkpoint_every = _base_setup(name, data, pn, prop, settings, schedule, base, workdir, seed,
                                                   checkpoint_every)
    run = run_dir(pn, settings, workdir, seed)
    rec = finished(run, settings)
    if rec is not None:
        try:
            return Proposal(**rec, spec=ArchSpec.load(run / "spec.json"), base_spec=base, reused=True)
        except (TypeError, ArchsearchError):
            pass  # a damaged run: redo the pruning step (the base run is reused)
    run.mkdir(parents=True, exist_ok=True)
    pruned, result = _waiting(f"{name} seed {seed}", lambda: prop.run(
        base, data, settings, schedule, run, seed=seed, device=device, progress=progress,
        checkpoint_every=checkpoint_every, base_dir=base_dir))
    pruned.spec.meta = {"origin": "pruned", "proposer": str(pn), "ratio": settings.ratio, "seed": seed,
                        "preset": settings.preset, "width": settings.width, "epochs": schedule.epochs,
                        "archsearch_version": __version__}
    tested = prop.trains or test_untrained
    if tested and result.best_acc is None:  # an untrained base net, asked to be tested
        result.best_acc = result.final_acc = evaluate(base, initial_state(base, seed), data, device,
                                                      tta_flip=schedule.tta_flip)
    pruned_acc = evaluate(pruned.spec, pruned.state, data, device, tta_flip=schedule.tta_flip) if tested else None
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

