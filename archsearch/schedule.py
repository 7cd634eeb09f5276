"""A training config resolved, for one kind of run, into the numbers the trainer steps by.

`make_schedule(config, kind)` takes a `TrainConfig` (`archsearch.config`: a preset is a named
one) and gives a `Schedule`: `scratch-e` (the config's epochs), `scratch-b` (epochs x
cost(base) / cost(spec), optionally capped; the paper caps at 2 on ImageNet only),
`finetune` (from given weights: at the fine-tune lr, or under the training recipe again for a
method whose original fine-tunes so, `FineTune`). The schedule carries the config it was
made from (`Schedule.config`, with make_schedule's own overrides folded in), so `train`
records the resolved config with every result without taking it as another argument.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .config import DEFAULT_PRESET, TrainConfig, get_preset
from .counting import CONVENTIONS, count
from .errors import ArchsearchError
from .spec import ArchSpec

SCHEDULE_KINDS = ("scratch-e", "scratch-b", "finetune")
FINETUNE_LRS = ("finetune", "train")


@dataclass(frozen=True)
class FineTune:
    """A method's own fine-tuning budget and lr rule, as its original code fine-tunes: `fraction`
    of the large net's epochs, at `lr` = "finetune" (a constant lr, the config's `finetune_lr`:
    every original main_finetune.py) or "train" (the training recipe again, its lr, warm-up and
    steps: Network Slimming's `main.py --refine --epochs 160`); under the `imagenet` preset
    `imagenet_fraction` and `imagenet_lr` instead. `source` says where each number comes from.
    Whatever the lr rule, the fine-tune arm keeps the recipe's augmentation and regularisers
    (Nesterov, label smoothing, crop padding, test-time flip), as the scratch arms do."""

    fraction: float
    lr: str = "finetune"
    imagenet_fraction: float | None = None
    imagenet_lr: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 10 or self.lr not in FINETUNE_LRS or (self.imagenet_lr or "finetune") not in FINETUNE_LRS:
            raise ArchsearchError(f"a fine-tune rule needs a fraction in (0, 10] and an lr rule in {FINETUNE_LRS}")

    def resolve(self, config: TrainConfig, train_epochs: int) -> tuple[int, str]:
        """(epochs, lr rule) of the fine-tune arm after a large net trained `train_epochs` under `config`."""
        imagenet = config.name == "imagenet" and self.imagenet_fraction is not None
        frac = self.imagenet_fraction if imagenet else self.fraction
        return max(1, round(frac * train_epochs)), (self.imagenet_lr or self.lr) if imagenet else self.lr


@dataclass(frozen=True)
class Schedule:
    """Everything about the optimisation, resolved to numbers."""

    kind: str
    preset: str
    epochs: int
    lr: float
    batch_size: int
    momentum: float
    weight_decay: float
    milestones: tuple[float, ...]
    gamma: float
    base_epochs: int
    budget_factor: float = 1.0  # Scratch-B: cost(base) / cost(spec), after the cap
    cap: float | None = None
    count: str = "macs"
    lr_shape: str = "step"
    warmup: float = 0.0
    warmup_from: float = 0.1
    nesterov: bool = False
    label_smoothing: float = 0.0
    tta_flip: bool = False
    translate: int = 4
    # the resolved config this schedule was made from (None: a schedule built by hand); not a
    # setting of its own, so it takes no part in equality or `to_dict` (the run's fingerprint)
    config: TrainConfig | None = field(default=None, compare=False, repr=False)

    def drop_epochs(self) -> list[int]:
        """The (0-based) epochs before which the step schedule multiplies the lr by gamma:
        the distinct `int(m * epochs)` of the milestones, as the original code's
        `if epoch in [int(E*0.5), int(E*0.75)]: lr *= 0.1` (cifar/*/main_B.py), except that
        no drop happens at epoch 0 (so a 1-epoch run trains at the full lr). At 160 epochs:
        80 and 120; at 6: 3 and 4; at 3: 1 and 2; at 2: 1; at 1: none."""
        if self.lr_shape == "every":  # imagenet/*/main_B.py: step_size = int(epochs / 3); lr * 0.1 ** (epoch // step)
            step = max(1, int(self.epochs * self.milestones[0]))
            return list(range(step, self.epochs, step))
        return sorted({int(m * self.epochs) for m in self.milestones} - {0})

    def warmup_epochs(self) -> int:
        """Step shapes: the first epochs trained at lr x warmup_from (SFP's recipe: one epoch at
        lr / 10, its `--schedule 1 ... --gammas 10 ...`): `warmup` of the epochs, at least one."""
        return max(1, int(self.warmup * self.epochs)) if self.warmup > 0 and self.lr_shape != "onecycle" else 0

    def lr_at(self, epoch: int) -> float:
        """Step decay at fixed fractions of the epochs (`drop_epochs`), after any warm-up epochs."""
        warm = self.warmup_from if epoch < self.warmup_epochs() else 1.0
        return warm * self.lr * self.gamma ** sum(epoch >= d for d in self.drop_epochs())

    def lr_at_step(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """One-cycle (airbench): a linear rise from lr x warmup_from to lr over the first
        `warmup` of all steps, then a linear fall to 0 at the last step."""
        if self.lr_shape != "onecycle":
            return self.lr_at(epoch)
        total = max(1, self.epochs * steps_per_epoch)
        t = epoch * steps_per_epoch + step
        rise = int(self.warmup * total)
        if t < rise:
            return self.lr * (self.warmup_from + (1 - self.warmup_from) * t / rise)
        return self.lr * max(0.0, 1 - (t - rise) / max(1, total - rise))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["config"]
        d["milestones"] = list(self.milestones)
        # the recipe's fields only where they differ from the paper's: runs made before they
        # existed keep their fingerprints (and so resume) and their proposal folders
        for k, v in RECIPE_DEFAULTS.items():
            if d[k] == v:
                del d[k]
        return d


# the recipe's knobs and their paper values, read off Schedule's own defaults (one home)
RECIPE_DEFAULTS = {f.name: f.default for f in fields(Schedule)
                   if f.name in ("lr_shape", "warmup", "warmup_from", "nesterov", "label_smoothing", "tta_flip",
                                 "translate")}


def make_schedule(preset: str | TrainConfig = DEFAULT_PRESET, kind: str = "scratch-e", *, epochs: int | None = None,
                  spec: ArchSpec | None = None, base: ArchSpec | None = None, cap: float | None = None,
                  count_convention: str | None = None, lr: float | None = None,
                  batch_size: int | None = None, finetune_lr: str = "finetune") -> Schedule:
    """The schedule of a `kind` run under `preset` (a name or a resolved config); the keyword
    overrides are the config's own fields for this kind (`epochs` is the fine-tune epochs of a
    `finetune` run, `lr` its lr) and are folded into the config the schedule carries.
    `finetune_lr` (`FineTune.lr`): "finetune", a constant lr at the config's finetune_lr;
    "train", the training recipe's lr rule over the fine-tune epochs."""
    p = preset if isinstance(preset, TrainConfig) else get_preset(preset)
    if kind not in SCHEDULE_KINDS:
        raise ArchsearchError(f"unknown schedule {kind!r}; known: {', '.join(SCHEDULE_KINDS)}")
    if epochs is not None and epochs < 1:
        raise ArchsearchError(f"epochs must be at least 1, got {epochs}")
    if finetune_lr not in FINETUNE_LRS:
        raise ArchsearchError(f"unknown fine-tune lr rule {finetune_lr!r}; known: {', '.join(FINETUNE_LRS)}")
    if count_convention is not None and count_convention not in CONVENTIONS:
        raise ArchsearchError(f"unknown counting convention {count_convention!r}; known: {', '.join(CONVENTIONS)}")
    if kind == "scratch-b":
        if spec is None or base is None:
            raise ArchsearchError("scratch-b needs the trained spec and the base spec it is compared with")
        if cap is not None and cap <= 0:
            raise ArchsearchError(f"scratch-b cap must be positive, got {cap}")
    ft = kind == "finetune"
    constant = ft and finetune_lr == "finetune"  # a fine-tune at the training recipe's lr rule is stepped as training
    p = p.override(**{"finetune_epochs" if ft else "epochs": epochs, "finetune_lr" if constant else "lr": lr},
                   batch_size=batch_size or None, count=count_convention,
                   scratch_b_cap=cap if kind == "scratch-b" else None)
    base_epochs = p.finetune_epochs if ft else p.epochs
    factor, n = 1.0, base_epochs
    if kind == "scratch-b":
        factor = count(base).cost(p.count) / count(spec).cost(p.count)
        cap = p.scratch_b_cap
        if cap is not None:
            factor = min(factor, cap)
        n = max(1, int(base_epochs * factor))  # int(), as the original main_B.py: int(160 * base / pruned)
    # every arm keeps the recipe's augmentation and regularisers (issue 29: a fair fine-tune arm); a
    # constant-lr fine-tune drops only the lr shape and its warm-up
    recipe = {k: getattr(p, k) for k in RECIPE_DEFAULTS}
    if constant:
        recipe.update(lr_shape="step", warmup=0.0, warmup_from=RECIPE_DEFAULTS["warmup_from"])
    return Schedule(
        **recipe,
        kind=kind, preset=p.name, epochs=n, lr=p.finetune_lr if constant else p.lr,
        batch_size=p.batch_size, momentum=p.momentum, weight_decay=p.weight_decay,
        # a constant-lr fine-tune keeps its lr: every original main_finetune.py (cifar/l1-norm-pruning, network-
        # slimming, weight-level's schedule [41, 42] of 40 epochs, imagenet/*: 0.1 ** (epoch // 30) over 20 or fewer)
        milestones=() if constant else p.milestones, gamma=p.gamma, base_epochs=base_epochs,
        budget_factor=factor, cap=cap, count=p.count, config=p,
    )


__all__ = ["SCHEDULE_KINDS", "FINETUNE_LRS", "FineTune", "RECIPE_DEFAULTS", "Schedule", "make_schedule"]
