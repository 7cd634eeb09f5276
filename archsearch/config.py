"""One typed configuration per training run: `TrainConfig`, and the presets as named ones.

A preset is a `TrainConfig` (`PRESETS`); a command's flags and a sweep's `[train]` or
`[extract]` table are overrides of it (`resolve`), so a preset means the same width, epochs
and checkpointing wherever it is named: `train`, `extract`, `transfer --train` and sweeps
all resolve it here, and the defaults live nowhere else. The trainer takes the resolved
config's optimisation (`train.make_schedule`), and results record it.

The presets (DESIGN.md, "Paper settings"; `paper` is the default):
- `paper`: the exact CIFAR settings of Liu et al. 2019: SGD lr 0.1, momentum 0.9, weight decay
  1e-4, batch 64, 160 epochs, lr x0.1 at 50% and 75%; fine-tune 40 epochs at lr 1e-3.
  Scratch-B budgets use the original code's FLOP count.
- `fast`: a reduced CPU setting: width 0.25, batch 128, 20 epochs (fine-tune 5); the
  optimiser and lr steps are the paper's.
- `tiny`: for tests and the quickstart: width 0.25, batch 64, 12 epochs, lr 0.05.
- `quick`: the levers of fast CIFAR training (airbench) that leave the paper's networks as they
  are: 8 epochs, batch 256, one-cycle lr 0.2, Nesterov, label smoothing 0.1, wd 5e-4, test-time
  flip, width 0.25.
- `imagenet`, `sfp`: the paper's ImageNet settings and soft filter pruning's own CIFAR recipe.

This module imports nothing heavy (no torch), so that sweep specs and the CLI can check preset
names and ranges without loading the trainer.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, asdict, dataclass
from typing import Any

from .errors import ArchsearchError
from .limits import MAX_EPOCHS, MAX_WIDTH_MULT

# DESIGN.md: the paper's CIFAR settings are the default preset, wherever a preset is not named
DEFAULT_PRESET = "paper"
LR_SHAPES = ("step", "every", "onecycle")
COUNTS = ("macs", "original")  # counting conventions for Scratch-B (counting.CONVENTIONS)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run, resolved to numbers. Checked when made: a config that
    exists is a valid one (`__post_init__`), whether it came from a preset, a flag or a file."""

    name: str                       # the preset it was resolved from
    epochs: int
    lr: float
    batch_size: int
    width: float                    # width multiplier of the base net
    finetune_epochs: int
    finetune_lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    count: str = "macs"             # counting convention for Scratch-B
    about: str = ""
    scratch_b_cap: float | None = None  # the cap on Scratch-B's epoch factor when none is given
    checkpoint_every: int = 5       # epochs between checkpoints (a run resumes from the last one)
    # the fast-training recipe (airbench, KellerJordan/cifar10-airbench); the defaults are the paper's
    lr_shape: str = "step"          # "step": x gamma at the milestones; "every": x gamma every int(E x milestones[0])
                                    # epochs; "onecycle": per-step warm-up, linear decay
    warmup: float = 0.0             # onecycle: fraction of the steps spent rising from lr x warmup_from to lr;
                                    # step: fraction of the epochs (at least one) trained at lr x warmup_from
    warmup_from: float = 0.1
    nesterov: bool = False
    label_smoothing: float = 0.0
    tta_flip: bool = False          # test accuracy on the mean logits of the image and its mirror
    translate: int = 4              # random-crop padding in pixels (the paper's RandomCrop(32, padding=4))

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        bad = _why_invalid(self)
        if bad:
            raise ArchsearchError(f"training config {self.name!r}: {bad}")

    def override(self, **changes: Any) -> "TrainConfig":
        """This config with `changes` applied (a None value changes nothing), checked again."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ArchsearchError(f"unknown training setting {unknown[0]!r}")
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "TrainConfig":
        """A recorded config read back (`to_dict`'s, in result.json and checkpoints), checked as a
        made one is; keys a newer archsearch may add are ignored, as every file format here does."""
        if not isinstance(d, dict):
            raise ArchsearchError("a training config must be a table")
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.default is MISSING and f.name not in d]
        if missing:
            raise ArchsearchError(f"training config: {missing[0]} is missing")
        ms = d.get("milestones", [])
        if not (isinstance(ms, (list, tuple)) and all(isinstance(m, (int, float)) and not isinstance(m, bool)
                                                      for m in ms)):
            raise ArchsearchError(f"training config: milestones must be a list of numbers, got {ms!r}")
        return cls(**{f.name: d[f.name] for f in fields if f.name in d})


def is_real(v: Any) -> bool:
    """A finite number (a bool is not one): what every numeric setting must be first."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_whole(v: Any, lo: int, hi: int) -> bool:
    """A whole number in [lo, hi] (a bool is not one): every count a setting gives."""
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _why_invalid(c: TrainConfig) -> str | None:
    whole = is_whole

    def real(v, lo, hi, lo_open=False):
        return is_real(v) and (v > lo if lo_open else v >= lo) and v <= hi

    checks = [
        (isinstance(c.name, str) and isinstance(c.about, str), "name and about are strings"),
        (whole(c.epochs, 1, MAX_EPOCHS), f"epochs must be a whole number in [1, {MAX_EPOCHS}], got {c.epochs!r}"),
        (whole(c.finetune_epochs, 1, MAX_EPOCHS),
         f"finetune_epochs must be a whole number in [1, {MAX_EPOCHS}], got {c.finetune_epochs!r}"),
        (whole(c.checkpoint_every, 1, MAX_EPOCHS),
         f"checkpoint_every must be a whole number in [1, {MAX_EPOCHS}], got {c.checkpoint_every!r}"),
        (whole(c.batch_size, 1, 1 << 20), f"batch_size must be a whole number in [1, {1 << 20}], got {c.batch_size!r}"),
        (real(c.width, 0, MAX_WIDTH_MULT, lo_open=True), f"width must be in (0, {MAX_WIDTH_MULT:g}], got {c.width!r}"),
        # an lr too large to train on is the trainer's to report (`train.Diverged`: "try a lower lr")
        (real(c.lr, 0, math.inf, lo_open=True), f"lr must be a positive number, got {c.lr!r}"),
        (real(c.finetune_lr, 0, math.inf, lo_open=True), f"finetune_lr must be a positive number, got {c.finetune_lr!r}"),
        (real(c.momentum, 0, 1), f"momentum must be in [0, 1], got {c.momentum!r}"),
        (real(c.weight_decay, 0, 1), f"weight_decay must be in [0, 1], got {c.weight_decay!r}"),
        (real(c.gamma, 0, 1, lo_open=True), f"gamma must be in (0, 1], got {c.gamma!r}"),
        (all(real(m, 0, 1) for m in c.milestones), f"milestones must lie in [0, 1], got {list(c.milestones)!r}"),
        (c.count in COUNTS, f"count must be one of {', '.join(COUNTS)}, got {c.count!r}"),
        (c.scratch_b_cap is None or real(c.scratch_b_cap, 0, 1000, lo_open=True),
         f"scratch_b_cap must be in (0, 1000], got {c.scratch_b_cap!r}"),
        (c.lr_shape in LR_SHAPES, f"lr_shape must be one of {', '.join(LR_SHAPES)}, got {c.lr_shape!r}"),
        (c.lr_shape != "every" or len(c.milestones) == 1, "lr_shape 'every' takes one milestone (the step fraction)"),
        (real(c.warmup, 0, 1), f"warmup must be in [0, 1], got {c.warmup!r}"),
        (real(c.warmup_from, 0, 1), f"warmup_from must be in [0, 1], got {c.warmup_from!r}"),
        (isinstance(c.nesterov, bool) and isinstance(c.tta_flip, bool), "nesterov and tta_flip are true or false"),
        (real(c.label_smoothing, 0, 1, lo_open=False) and c.label_smoothing < 1,
         f"label_smoothing must be in [0, 1), got {c.label_smoothing!r}"),
        (whole(c.translate, 0, 64), f"translate must be a whole number of pixels in [0, 64], got {c.translate!r}"),
    ]
    return next((msg for ok, msg in checks if not ok), None)


PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig("paper", epochs=160, lr=0.1, batch_size=64, width=1.0, finetune_epochs=40, count="original",
                         about="Liu et al. 2019 CIFAR settings: 160 epochs, batch 64, lr 0.1, full width"),
    "fast": TrainConfig("fast", epochs=20, lr=0.1, batch_size=128, width=0.25, finetune_epochs=5,
                        about="reduced CPU setting: 20 epochs, batch 128, width 0.25"),
    "tiny": TrainConfig("tiny", epochs=12, lr=0.05, batch_size=64, width=0.25, finetune_epochs=4,
                        about="tests and quickstart: 12 epochs, batch 64, lr 0.05, width 0.25"),
    # the paper's ImageNet settings (imagenet/*/main_E.py, main_B.py, main_finetune.py of the Rethinking code):
    # 90 epochs, batch 256, lr 0.1 x0.1 every int(E/3) epochs (30 and 60 at 90; `adjust_learning_rate`), weight
    # decay 1e-4, fine-tuning 20 epochs at lr 1e-3 (l1-norm-pruning's; a table's fine-tune arm takes each
    # method's own: network-slimming's 5, weight-level's 10; `Proposer.finetune`). Scratch-B is uncapped here:
    # l1-norm-pruning's, thinet's and regression-pruning's main_B.py cap it at 2x (180 epochs) and a table
    # applies their cap (`Proposer.imagenet_scratch_b_cap`); network-slimming's and weight-level's main_B.py do
    # not cap. An ImageNet epoch is long, so every one is checkpointed.
    "imagenet": TrainConfig("imagenet", epochs=90, lr=0.1, batch_size=256, width=1.0, finetune_epochs=20,
                            milestones=(1 / 3,), lr_shape="every", count="original",
                            checkpoint_every=1,
                            about="Liu et al. 2019 ImageNet settings: 90 epochs, batch 256, lr 0.1 x0.1 every 30 "
                                  "epochs, wd 1e-4, fine-tune 20 epochs at lr 0.001 (tables: each method's own), "
                                  "Scratch-B uncapped (tables: 2x for L1-norm, ThiNet, regression)"),
    # soft filter pruning's CIFAR recipe, as cifar/soft-filter-pruning/README.md of the Rethinking code runs its
    # baseline, Scratch-E and Scratch-B: 200 epochs, batch 128, Nesterov momentum 0.9, wd 5e-4, lr 0.01 for the
    # first epoch, then 0.1, x0.2 at epochs 60, 120 and 160 (`--schedule 1 60 120 160 --gammas 10 0.2 0.2 0.2
    # --learning_rate 0.01`). That README's SFP command itself passes `--learning_rate 0.001` (so 0.001, then
    # 0.01); archsearch's `sfp` proposer trains under this preset's lr like every other arm, so that the pruned
    # and the scratch arms share one recipe (checked against the README, 2026-12-07; issue 29)
    "sfp": TrainConfig("sfp", epochs=200, lr=0.1, batch_size=128, width=1.0, finetune_epochs=40, weight_decay=5e-4,
                       milestones=(0.3, 0.6, 0.8), gamma=0.2, warmup=0.005, warmup_from=0.1, nesterov=True,
                       count="original",
                       about="He et al. 2018's CIFAR recipe (soft filter pruning): 200 epochs, batch 128, lr 0.01 "
                             "for one epoch then 0.1, x0.2 at 60/120/160, Nesterov, wd 5e-4"),
    # airbench's levers that suit the paper's BN networks (no whitening layer or lookahead: those
    # change the network): batch 256, Nesterov momentum, a one-cycle lr per step, label smoothing
    # 0.1, weight decay 5e-4, test-time flip. Measured against `fast`: benchmarks/time_to_accuracy.py
    "quick": TrainConfig("quick", epochs=8, lr=0.2, batch_size=256, width=0.25, finetune_epochs=2, weight_decay=5e-4,
                         lr_shape="onecycle", warmup=0.2, nesterov=True, label_smoothing=0.1, tta_flip=True,
                         about="fast recipe for reduced scale: 8 epochs, batch 256, one-cycle lr 0.2, Nesterov, "
                               "label smoothing 0.1, wd 5e-4, test-time flip, width 0.25"),
}


def get_preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ArchsearchError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def resolve(preset: str | None = None, **overrides: Any) -> TrainConfig:
    """The one resolution of a run's training config: the named preset (default
    `DEFAULT_PRESET`) with the given overrides (None: the preset's). Every entry point calls
    this, so the same preset and flags give the same config everywhere."""
    return get_preset(preset or DEFAULT_PRESET).override(**overrides)


__all__ = ["TrainConfig", "PRESETS", "DEFAULT_PRESET", "get_preset", "resolve", "is_real", "is_whole"]
