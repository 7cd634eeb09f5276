"""The proposer class, its registry and the registry's description of every method.

A method is one `Proposer` subclass in one module, decorated with `@register_proposer`:

    @register_proposer
    class Slimming(Proposer):
        name = "slimming"                 # the METHOD of METHOD-ARCH-DATA
        kind = "channels"                 # what it proposes: channels, sparsity or depth (blocks)
        about = "Network Slimming: ..."   # one line, for help texts and `extract`'s summary
        options = SlimmingOptions         # its typed options (options.py), defaults included
        allocation = GlobalThreshold()    # how scores become keep masks (allocation.py)

        def prune(self, model, base, settings): ...

The registry API, for the CLI's help, sweep files and table rows (nothing here trains):
- `PROPOSERS` (name -> Proposer, in registration order), `get_proposer(name)`, `parse(spec)`;
- `describe(name)` -> `MethodInfo`: name, kind, about, default ratio, the allocation's
  words, the families it supports (None: all), and its options as `OptionInfo`s (name,
  command-line flag, type, default, help, and whether every method takes it); `catalogue()`
  is every method's `MethodInfo`, in registry order;
- `Proposer.make_options(**kw)`: the method's options from keywords (None: the default), or one
  `ArchsearchError` line refusing an option the method does not take, naming the methods that
  do and the method's own options. A sweep's `[extract]` table or a table row can be checked
  with it before anything trains; `resolve_settings` calls it.
The registry is filled by importing `archsearch.propose` (its method modules import torch);
the options models alone (`options.py`) import nothing heavy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from .._io import load_state, torch_save
from ..archs import build, build_with, get_family
from ..data import Dataset
from ..errors import ArchsearchError
from ..names import ProposerName, parse_proposer
from ..spec import ArchSpec
from ..schedule import FineTune
from ..result import Result
from ..train import BNL1, EpochStats, Schedule, TrainHook, train
from .allocation import Allocation, GlobalThreshold
from .options import Options, flag, owner

PROPOSERS: dict[str, "Proposer"] = {}


@dataclass
class Pruned:
    spec: ArchSpec
    state: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)
    keep: list | None = None  # channel proposals: the kept channels of each group (for the ticket init)


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
    # a method's own options (`Options.recorded`), e.g. of a proposer added later: part of the key
    options: dict[str, Any] | None = None
    # how a global threshold counts what it prunes (`allocation.prune_count`): "original" where the
    # method's original code counts int(ratio x total) + 1 (proposals counted by round() before
    # 2026-12-07 had none, and are not reused for it)
    count_rule: str | None = None

    def record(self) -> dict:
        """The settings as recorded and hashed; the optional ones only when set, so runs made
        before they existed keep their keys."""
        d = asdict(self)
        for k in ("train_subset", "layer_ratios", "rounds", "rewind_epoch", "selection", "options", "count_rule"):
            if d[k] is None:
                del d[k]
        return d

    def key(self) -> str:
        h = hashlib.sha256(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:8]
        return f"r{self.ratio:g}-{self.preset}-w{self.width:g}-e{self.schedule['epochs']}-{h}"


def initial_state(base: ArchSpec, seed: int) -> dict[str, torch.Tensor]:
    """The weights `train` starts `base` from with this seed (it seeds, then builds)."""
    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in build(base).state_dict().items()}


def save_ticket(pruned: Pruned, base: ArchSpec, seed: int, run: Path) -> None:
    """A channel proposal's winning-ticket initialisation (the structured lottery of
    `cifar/lottery-ticket/l1-norm-pruning`): the base net's initial weights, narrowed to the
    channels the proposal kept, in `run/ticket_init.pt`."""
    if pruned.keep is None:
        return
    init = build(base)
    init.load_state_dict(initial_state(base, seed))
    _, state = get_family(base.family).narrow(init, base, pruned.keep)
    torch_save(state, run / "ticket_init.pt")
    pruned.info["ticket_init"] = "ticket_init.pt"


def channel_proposal(model: nn.Module, base: ArchSpec, keep: list, *, threshold: float | None = None,
                     clamped: list[dict] | tuple = (), **info) -> Pruned:
    """The channel-pruned net of `keep` (one mask per channel group): its spec, the inherited
    weights (`Family.narrow`) and the pattern's facts."""
    fam = get_family(base.family)
    spec, state = fam.narrow(model, base, keep)
    names = [g.name for g in fam.groups(base)]
    clamped = [{**c, "group": names[c["layer"]]} for c in clamped]
    info = {"threshold": threshold, "clamped": clamped, **info,
            "pruned_channels": int(sum(len(k) - k.sum() for k in keep)),
            "total_channels": int(sum(len(k) for k in keep))}
    return Pruned(spec.replace(base_widths=base.widths), state, info, keep=[np.asarray(k, dtype=bool) for k in keep])


def option_names(model: type[Options]) -> list[str]:
    return [f.name for f in dataclasses.fields(model)]


class Proposer:
    name: ClassVar[str]
    kind: ClassVar[str]  # "channels" (structured), "sparsity" (unstructured) or "depth" (blocks kept)
    about: ClassVar[str] = ""
    families: ClassVar[tuple[str, ...] | None] = None  # None: every family
    options: ClassVar[type[Options]] = Options  # the typed options, with the method's defaults
    allocation: ClassVar[Allocation] = GlobalThreshold()  # how scores become keep masks
    data_aware: ClassVar[bool] = False  # `prune` also reads training data (sampled activations)
    # the per-channel importance it ranks a channel group's channels by (`importance.py`: one score
    # tensor per group, larger is more important), as `archsearch sensitivity` prunes one group at a
    # time with it; None: the method has none (sparsity, depth, data-aware and at-init methods)
    criterion: ClassVar[Callable[[nn.Module, ArchSpec], list[torch.Tensor]] | None] = None
    trains: ClassVar[bool] = True  # trains a base net (False: scores it at initialisation, `at_init.py`)
    # the table's fine-tune arm: the method's own budget and lr rule (`schedule.FineTune`), from its
    # original fine-tuning script; a method without one takes L1-norm's, and says so in `source`
    finetune: ClassVar[FineTune] = FineTune(
        0.25, imagenet_fraction=20 / 90,
        source="no fine-tuning script in the Rethinking code for this method: L1-norm's rule, 40 of 160 epochs "
               "(CIFAR) or 20 of 90 (ImageNet) at lr 0.001")
    # Scratch-B's epoch factor cap under the imagenet preset: the Rethinking code's imagenet main_B.py
    # caps at 2 (180 epochs) for L1-norm, ThiNet and regression only; None: uncapped
    imagenet_scratch_b_cap: ClassVar[float | None] = None

    @property
    def default_ratio(self) -> float:
        return {f.name: f.default for f in dataclasses.fields(self.options)}["ratio"]

    def default_sparsity(self, family: str) -> float:
        """The regulariser's strength where the options leave it unset (a per-family default)."""
        return 0.0

    def check_family(self, base: ArchSpec) -> None:
        """Refuse, in one line and before any training, a family this method does not apply to."""
        if self.families is not None and base.family not in self.families:
            raise ArchsearchError(f"{self.name} does not apply to the {base.family} family "
                                  f"(it supports: {', '.join(self.families)})")

    def make_options(self, **kw: Any) -> Options:
        """This method's options from keywords (None: the default); a foreign or unknown one is
        refused in one line."""
        kw = {k: v for k, v in kw.items() if v is not None}
        mine = option_names(self.options)
        for k in kw:
            if k not in mine:
                raise self.refusal(k)
        return self.options(**kw)

    def refusal(self, option: str) -> ArchsearchError:
        owners = [m for m, p in PROPOSERS.items() if option in option_names(p.options)
                  and (option != "variant" or getattr(p.allocation, "variants", None))]  # those with named ones
        mine = f"{self.name}'s options: {', '.join(option_names(self.options))}"
        if not owners:
            return ArchsearchError(f"{self.name} has no option {option!r}; {mine}")
        group = owner(PROPOSERS[owners[0]].options, option).group
        what = "variants" if option == "variant" else flag(option)
        whose = f"{group} ({', '.join(owners)})" if group else ", ".join(owners)
        verb = "belong" if what == "variants" else "belongs"
        return ArchsearchError(f"{self.name} {self.allocation.about}; {what} {verb} to {whose}; {mine}")

    def hooks(self, base: ArchSpec, settings: Settings) -> list[TrainHook]:
        """What acts while the base net trains: BN-L1 at the settings' s when s > 0."""
        return [BNL1(settings.sparsity)] if settings.sparsity else []

    def prune(self, model: nn.Module, base: ArchSpec, settings: Settings) -> Pruned:
        raise NotImplementedError

    def train_base(self, base: ArchSpec, data: Dataset, settings: Settings, schedule: Schedule, *, seed: int,
                   device: str, progress: Callable[[EpochStats], None] | None, checkpoint_every: int,
                   base_dir: Path) -> tuple[nn.Module, Result]:
        """Train the base net once in `base_dir` with this method's hooks (reused when done,
        resumed when interrupted): the trained module and the run's Result. The one path by
        which a proposal (`run`) and a sensitivity analysis (`archsearch.sensitivity`) get it."""
        result = train(base, data, schedule, seed=seed, device=device, out_dir=base_dir, progress=progress,
                       checkpoint_every=checkpoint_every, hooks=self.hooks(base, settings))
        return build_with(base, load_state(base_dir / "model.pt", "model")), result

    def run(self, base: ArchSpec, data: Dataset, settings: Settings, schedule: Schedule, run: Path, *, seed: int,
            device: str, progress: Callable[[EpochStats], None] | None, checkpoint_every: int, base_dir: Path):
        """The schedule: train the base net once in `base_dir` (`train_base`), then prune it into
        the proposal's `run` folder. Returns (Pruned, the base run's Result). Iterative methods
        override it; every training goes through `train(out_dir=...)`, so an interrupted run
        resumes."""
        model, result = self.train_base(base, data, settings, schedule, seed=seed, device=device, progress=progress,
                                        checkpoint_every=checkpoint_every, base_dir=base_dir)
        pruned = self.prune(model, base, settings, data) if self.data_aware else self.prune(model, base, settings)
        save_ticket(pruned, base, seed, run)
        return pruned, result


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


# -- the registry's description of each method ---------------------------------------------------
@dataclass(frozen=True)
class OptionInfo:
    name: str        # the keyword of `propose` / `resolve_settings`, and the key of a sweep's table
    type: str        # the annotation, e.g. "float", "int | None", "tuple[float, ...] | None"
    default: Any     # the method's default (None: derived, e.g. from the preset or the family)
    help: str
    common: bool     # every method takes it

    @property
    def flag(self) -> str:
        return flag(self.name)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    kind: str
    about: str
    default_ratio: float
    allocation: str  # what its allocation does, in words
    families: tuple[str, ...] | None
    options: tuple[OptionInfo, ...]


def describe(method: str) -> MethodInfo:
    """What a method is and which options it takes, with their defaults and help texts."""
    prop = get_proposer(method)
    common = set(option_names(Options))
    opts = tuple(OptionInfo(f.name, str(f.type), f.default, f.metadata.get("help", ""), f.name in common)
                 for f in dataclasses.fields(prop.options))
    return MethodInfo(prop.name, prop.kind, prop.about, prop.default_ratio, prop.allocation.about, prop.families, opts)


def catalogue() -> list[MethodInfo]:
    """Every registered method, in registry order."""
    return [describe(m) for m in PROPOSERS]
