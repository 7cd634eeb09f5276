"""The typed options of a proposer: one frozen dataclass per method, defaults in one place.

`Options` holds what every method takes (ratio, preset, width, epochs, sparsity, floor,
batch_size, train_subset); a method's own model subclasses it, adding its options and
setting its defaults (`default("ratio", 0.6)`), e.g.

    @dataclass(frozen=True)
    class SlimmingOptions(Options):
        ratio: float = default("ratio", 0.6)

Two shared groups of options are mixins with a name for the methods that take them (used
when another method refuses them): `PerLayerOptions` (variant, stage_ratios, skip:
predefined-ratio methods) and `RoundsOptions` (rounds, rewind_epoch: iterative methods).
Each field carries its help text in `metadata["help"]`, so the CLI's help, a sweep's
`[extract]` table and a table row can be described and checked from the model
(`archsearch.propose.base.describe`). A model checks its values when made, like
`config.TrainConfig`: an `Options` that exists is a valid one. Checks that need the base
net or the schedule (stage counts, skip names, rewind epochs) are the allocation's
(`allocation.py`). This module imports nothing heavy (no torch).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..config import DEFAULT_PRESET
from ..config import is_real as _real
from ..config import is_whole
from ..errors import ArchsearchError
from ..limits import OPTION_NAME

MAX_SUBSET = 1 << 31


def option(value: Any, help: str) -> Any:
    """A field with its default and help text."""
    return field(default=value, metadata={"help": help})


def default(name: str, value: Any, base: type | None = None, help: str | None = None) -> Any:
    """Field `name` of `base` (default `Options`) with a method's own default (and help)."""
    inherited = {f.name: f for f in dataclasses.fields(base or Options)}[name]
    return option(value, inherited.metadata["help"] if help is None else help)


@dataclass(frozen=True)
class Options:
    """What every method takes. `ratio`'s default is the method's own (its subclass sets it)."""

    group: ClassVar[str] = ""  # the methods that take this model's own fields, in a refusal's words
    # whether this class's own fields go into `Settings.options` as they are: the shared ones
    # reach `Settings` through its named fields (the allocation's ratio, layer ratios, rounds);
    # a method's own options (declared in its subclass) are recorded there, so they key its runs
    recorded: ClassVar[bool] = False

    ratio: float = option(0.5, "Prune ratio: the share of the base net the method removes.")
    preset: str = option(DEFAULT_PRESET, "Training preset of the base net (archsearch.config.PRESETS).")
    width: float | None = option(None, "Width multiplier of the base net (default: the preset's).")
    epochs: int | None = option(None, "Epochs of the base net's training (default: the preset's).")
    sparsity: float | None = option(0.0, "Strength of the regulariser trained with the base net (0: none).")
    floor: float = option(0.0, "Per-layer floor: keep at least max(1, ceil(floor x width)) channels.")
    batch_size: int | None = option(None, "Batch size of the base net's training (default: the preset's).")
    train_subset: int | None = option(None, "Train the base net on this many training images (a fixed "
                                            "class-stratified subset; the test set stays whole).")

    def __post_init__(self) -> None:
        if not _real(self.floor) or not 0.0 <= self.floor < 1.0:
            raise ArchsearchError(f"floor must be a fraction in [0, 1), got {self.floor}")
        if not _real(self.ratio) or not 0.0 < self.ratio < 1.0:
            raise ArchsearchError(f"prune ratio must be between 0 and 1 (exclusive), got {self.ratio}")
        if self.sparsity is not None and not (_real(self.sparsity) and 0 <= self.sparsity <= 1):
            raise ArchsearchError(f"sparsity s must be in [0, 1], got {self.sparsity}")  # NaN too, before training
        t = self.train_subset
        if t is not None and not is_whole(t, 1, MAX_SUBSET):
            raise ArchsearchError(f"a training subset must be 1 to {MAX_SUBSET} images (a number at or above the "
                                  f"training set's size uses all of it), got {t}")

    def own(self) -> dict[str, Any] | None:
        """The method's own options, as `Settings.options` records them (None: it has none)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if owner(type(self), f.name).__dict__.get("recorded", True)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()} or None

    def given(self) -> dict[str, Any]:
        """The options that differ from the model's defaults (what a command line would say)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}


@dataclass(frozen=True)
class PerLayerOptions(Options):
    """Predefined per-layer ratios (Li et al.'s per-stage ratios and skip lists)."""

    group: ClassVar[str] = "predefined-ratio methods"
    recorded: ClassVar[bool] = False

    ratio: float = default("ratio", 0.5, help="Prune ratio of every channel group (or give stage_ratios).")
    variant: str | None = option(None, "A named configuration of the method (l1norm's A / B of Li et al.); "
                                       "the same as the suffix .A on the proposer spec.")
    stage_ratios: tuple[float, ...] | None = option(None, "One prune ratio per stage, e.g. 0.6,0.3,0.1.")
    skip: tuple[str, ...] | None = option(None, "Channel groups left unpruned, by module name "
                                                "(e.g. layer1.7.conv1).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stage_ratios is not None:
            object.__setattr__(self, "stage_ratios", tuple(self.stage_ratios))
            if not all(_real(r) for r in self.stage_ratios):
                raise ArchsearchError(f"stage ratios must be numbers, got {list(self.stage_ratios)!r}")
        if self.skip is not None:
            object.__setattr__(self, "skip", tuple(self.skip))
            if not all(isinstance(s, str) for s in self.skip):
                raise ArchsearchError(f"skip names channel groups by module name, got {list(self.skip)!r}")
        if self.variant is not None and not isinstance(self.variant, str):
            raise ArchsearchError(f"a variant is a name (e.g. A), got {self.variant!r}")


@dataclass(frozen=True)
class RoundsOptions(Options):
    """Rounds of pruning and retraining (the lottery)."""

    group: ClassVar[str] = "iterative methods"
    recorded: ClassVar[bool] = False

    rounds: int = option(5, "Prune-and-rewind rounds, ratio of the surviving weights each.")
    rewind_epoch: int | None = option(None, "Rewind to the weights after this epoch of the first round instead of "
                                            "the initialisation (late resetting).")


def flag(name: str) -> str:
    """An option as the command line spells it."""
    return "--" + name.replace("_", "-")


def owner(model: type[Options], name: str) -> type[Options]:
    """The class of `model`'s hierarchy that introduced option `name` (whose `group` names
    the methods that take it)."""
    for cls in reversed(model.__mro__):
        if name in cls.__dict__.get("__annotations__", {}) and dataclasses.is_dataclass(cls):
            return cls
    return model


# the options with a name of their own (a flag, a sweep file's key): the common ones and the shared groups'
NAMED = tuple(dict.fromkeys(f.name for cls in (PerLayerOptions, RoundsOptions) for f in dataclasses.fields(cls)))


def with_own(settings: dict[str, Any], own: dict[str, Any] | None) -> dict[str, Any]:
    """`settings` plus a method's own options (`--option NAME=VALUE`, or `options = {...}` in a
    sweep's [extract] table or a table row): the keywords `propose` takes. A setting that has a
    name of its own (ratio, rounds, ...) is given there, once; which own options a method takes
    is its options model's to say (`Proposer.make_options`)."""
    for k in own or {}:
        if not isinstance(k, str) or not re.match(OPTION_NAME, k):
            raise ArchsearchError(f"option names are lower-case words like batches or rewind_epoch, got {k!r}")
        if k in NAMED or k in settings:
            raise ArchsearchError(f"{k} is a shared setting, not a method's own option: give it by its own name "
                                  f"({flag(k)} on the command line, {k} = ... in a sweep file) where it is taken")
    return {**settings, **(own or {})}
