"""Training from scratch as a plain function: `train(spec, data, schedule) -> Result`.

What to train with is a `TrainConfig` (`archsearch.config`: the presets are named ones, the
default is `paper`); `make_schedule` resolves it, for one schedule kind, into a `Schedule`,
saved with every result:
`scratch-e` (the config's epochs), `scratch-b` (epochs x cost(base) / cost(spec), optionally
capped; the paper caps at 2 on ImageNet only), `finetune` (from given weights at the
fine-tune lr).

Methods that act while a net trains (Network Slimming's BN-L1, SSS's block-scale penalty,
SFP's per-epoch filter zeroing) do so through `TrainHook`s passed to `train`: a regulariser
after backward and an epoch-end step; their `key()` joins the run's fingerprint.

The step loop never syncs with the host: loss and accuracy accumulate in device
tensors and are read with `.item()` once per epoch. On CUDA it runs bf16 autocast and
channels_last, optionally `torch.compile`, and times epochs with CUDA events.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from ._io import RunLock, load_torch, torch_save, write_json
from .archs import apply_masks_, build_with, masked_weights
from .config import DEFAULT_PRESET, PRESETS, TrainConfig, get_preset
from .counting import CONVENTIONS, check_memory, count
from .data import AnyDataset as Dataset
from .data.stream import eval_batch_size
from .distributed import SINGLE, Dist, check_batch, current
from .distributed import init as init_dist
from .errors import ArchsearchError, clip
from .limits import MAX_SEED
from .spec import ArchSpec

SCHEDULE_KINDS = ("scratch-e", "scratch-b", "finetune")


class Diverged(ArchsearchError):
    """The loss became NaN or infinite."""


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
                  batch_size: int | None = None) -> Schedule:
    p = preset if isinstance(preset, TrainConfig) else get_preset(preset)
    if kind not in SCHEDULE_KINDS:
        raise ArchsearchError(f"unknown schedule {kind!r}; known: {', '.join(SCHEDULE_KINDS)}")
    if epochs is not None and epochs < 1:
        raise ArchsearchError(f"epochs must be at least 1, got {epochs}")
    conv = count_convention or p.count
    if conv not in CONVENTIONS:
        raise ArchsearchError(f"unknown counting convention {conv!r}; known: {', '.join(CONVENTIONS)}")
    base_epochs = epochs or (p.finetune_epochs if kind == "finetune" else p.epochs)
    factor, n = 1.0, base_epochs
    if kind == "scratch-b":
        if spec is None or base is None:
            raise ArchsearchError("scratch-b needs the trained spec and the base spec it is compared with")
        factor = count(base).cost(conv) / count(spec).cost(conv)
        cap = cap if cap is not None else p.scratch_b_cap
        if cap is not None:
            if cap <= 0:
                raise ArchsearchError(f"scratch-b cap must be positive, got {cap}")
            factor = min(factor, cap)
        n = max(1, int(base_epochs * factor))  # int(), as the original main_B.py: int(160 * base / pruned)
    # fine-tuning keeps a constant lr (the recipe's lr shape and regularisers are not its), but it is
    # tested as every other arm of the preset is: with the preset's test-time flip, or none
    recipe = ({"tta_flip": p.tta_flip} if kind == "finetune" else {k: getattr(p, k) for k in RECIPE_DEFAULTS})
    return Schedule(
        **recipe,
        kind=kind, preset=p.name, epochs=n,
        lr=lr if lr is not None else (p.finetune_lr if kind == "finetune" else p.lr),
        batch_size=batch_size or p.batch_size, momentum=p.momentum, weight_decay=p.weight_decay,
        # fine-tuning keeps its lr: every original main_finetune.py (cifar/l1-norm-pruning, network-slimming,
        # weight-level's schedule [41, 42] of 40 epochs, imagenet/*: 0.1 ** (epoch // 30) over 20 or fewer)
        milestones=() if kind == "finetune" else p.milestones, gamma=p.gamma, base_epochs=base_epochs,
        budget_factor=factor,
        cap=cap, count=conv,
    )


class TrainHook:
    """What a pruning method does while a net trains (the trainer has no method of its own).

    `attach` sees the model once, when it is built and on its device (a resumed run then
    loads its checkpoint into the same parameters); then
    `after_backward` runs after every backward pass, before the optimiser step (a
    regulariser's subgradient), and `epoch_end` after every epoch's training, before its
    evaluation (e.g. zeroing filters). `key()` names what the hook does, with its settings:
    it joins the run's fingerprint, so a checkpoint made with other hooks is never resumed."""

    def key(self) -> dict:
        raise NotImplementedError

    def attach(self, model: nn.Module) -> None:
        pass

    def after_backward(self, model: nn.Module) -> None:
        pass

    def epoch_end(self, model: nn.Module, epoch: int) -> None:
        pass


class BNL1(TrainHook):
    """Network Slimming's sparsity regulariser (Liu et al. 2017, Eq. 1 and Sec. 3.2): the L1
    subgradient s*sign(gamma) added to the gradient of every BatchNorm scale, as the
    original `updateBN()` does."""

    def __init__(self, s: float):
        if not (isinstance(s, (int, float)) and 0 <= s <= 1):
            raise ArchsearchError(f"sparsity s must be in [0, 1], got {s}")
        self.s = float(s)
        self.weights: list[torch.Tensor] = []

    def key(self) -> dict:
        return {"bn_l1": self.s}

    def attach(self, model: nn.Module) -> None:
        self.weights = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.weight is not None]

    def after_backward(self, model: nn.Module) -> None:
        ws = [w for w in self.weights if w.grad is not None]
        if self.s and ws:
            torch._foreach_add_([w.grad for w in ws], torch._foreach_mul(torch._foreach_sign(ws), self.s))


@dataclass
class EpochStats:
    epoch: int          # 1-based
    epochs: int
    train_loss: float
    train_acc: float
    test_acc: float
    best_acc: float
    lr: float
    seconds: float      # this epoch's training + evaluation time
    eta: float          # estimated seconds left

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    best_acc: float
    final_acc: float
    best_epoch: int
    epochs: int
    history: list[dict]
    params: int
    params_nonzero: int
    macs: int
    flops: int
    original_flops: int
    train_seconds: float
    device: str
    device_name: str
    torch_version: str
    archsearch_version: str
    seed: int
    data: str
    arch: str
    schedule: dict
    date: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    counting: str = "MACs count conv+linear multiply-accumulates per image; FLOPs = 2 x MACs"
    # what the network reads (for `archsearch export`): side, per-channel mean and std of
    # pixels / 255, and the class names in label order; None in results made before it existed
    preprocess: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        return cls(**d)

    def summary(self) -> str:
        from .counting import fmt_count

        return (f"{self.arch}-{self.data} seed {self.seed}: best {100 * self.best_acc:.2f}% "
                f"(epoch {self.best_epoch}), final {100 * self.final_acc:.2f}% | params {fmt_count(self.params_nonzero)}"
                f" | {fmt_count(self.macs)} MACs = {fmt_count(self.flops)} FLOPs (2xMACs) | "
                f"{self.epochs} epochs in {self.train_seconds:.1f}s on {self.device_name}")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ArchsearchError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ArchsearchError(f"device {device} asked for, but torch sees no CUDA device here")
    if dev.type not in ("cpu", "cuda"):
        raise ArchsearchError(f"device {device!r} is not supported; use cpu or cuda")
    return dev


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# -- the steps -----------------------------------------------------------------------------
class Engine:
    """Model, optimiser and loaders on one device; `run_epoch` is the hot loop.

    Also used by benchmarks/train_throughput.py, so the benchmark times exactly the
    code that `train` runs.
    """

    def __init__(self, spec: ArchSpec, data: Dataset, schedule: Schedule, *, seed: int = 0,
                 device: str | torch.device = "auto", compile: bool = False,
                 init_state: dict | None = None, hooks: list[TrainHook] | tuple = (), dist: Dist = SINGLE,
                 sync_bn: bool = False):
        self.dist = dist
        if dist.enabled:
            check_batch(dist, schedule.batch_size)
            self.dev = init_dist(dist, str(device))
        else:
            self.dev = resolve_device(device) if isinstance(device, str) else device
        self.cuda = self.dev.type == "cuda"
        if sync_bn and not (dist.enabled and self.cuda):
            raise ArchsearchError("--sync-bn needs several processes on GPUs (torch's SyncBatchNorm has no CPU kernel)")
        self.schedule = schedule
        check_memory(spec, schedule.batch_size // dist.world, self.dev)
        torch.manual_seed(seed)
        model = build_with(spec, init_state)
        if sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.dev)
        if self.cuda:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.mask_pairs = masked_weights(model)
        self.hooks = list(hooks)
        for h in self.hooks:
            h.attach(model)
        self.opt = torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=schedule.momentum,
                                   weight_decay=schedule.weight_decay, nesterov=schedule.nesterov)
        self.tta = schedule.tta_flip and data.flip  # no mirror test for data where a mirror is another class
        wrapped = model
        if dist.enabled:  # gradients averaged over the processes in backward
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=[self.dev] if self.cuda else None)
        self.forward = torch.compile(wrapped) if compile else wrapped
        self.train_loader = data.loader("train", schedule.batch_size, train=True, device=self.dev,
                                        pad=schedule.translate, seed=seed, channels_last=self.cuda, dist=dist,
                                        # a last batch of one image cannot train a BatchNorm1d (a classifier's)
                                        drop_last=dist.enabled or data.n_train % schedule.batch_size == 1)
        self.test_loader = data.loader("test", eval_batch_size(data.size), train=False, device=self.dev,
                                       channels_last=self.cuda, dist=dist)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda
                         else torch.autocast("cpu", enabled=False))

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def run_epoch(self, max_steps: int | None = None, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One pass over the training set. Returns device tensors (loss sum, correct) and n."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.dev)
        correct = torch.zeros((), device=self.dev, dtype=torch.long)
        n = 0
        sched = self.schedule
        per_step, steps = sched.lr_shape == "onecycle", len(self.train_loader)
        for step, (xb, yb) in enumerate(self.train_loader):
            if max_steps is not None and step >= max_steps:
                break
            if per_step:  # host-side arithmetic only: no sync
                self.set_lr(sched.lr_at_step(epoch, step, steps))
            with self.autocast:
                out = self.forward(xb)
                loss = F.cross_entropy(out, yb, label_smoothing=sched.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            for h in self.hooks:
                h.after_backward(self.model)
            self.opt.step()
            if self.mask_pairs:
                apply_masks_(self.model, self.mask_pairs)
            loss_sum += loss.detach().float() * len(yb)  # stays on the device: no host sync
            correct += (out.argmax(1) == yb).sum()
            n += len(yb)
        if self.dist.enabled:  # every process logs the numbers of the whole global batches
            count_t = torch.tensor(n, device=self.dev)
            self.dist.sum_(loss_sum, correct, count_t)
            n = int(count_t.item())
        return loss_sum, correct, n

    @torch.no_grad()
    def evaluate(self) -> torch.Tensor:
        """Number of correct test predictions (over every process), as a device tensor."""
        self.model.eval()
        forward = self.model if self.dist.enabled else self.forward  # no DDP hooks in evaluation
        correct = torch.zeros((), device=self.dev, dtype=torch.long)
        for xb, yb in self.test_loader:
            with self.autocast:
                correct += (eval_logits(forward, xb, self.tta).argmax(1) == yb).sum()
        self.dist.sum_(correct)
        return correct


def eval_logits(forward: Callable[[torch.Tensor], torch.Tensor], xb: torch.Tensor, tta_flip: bool) -> torch.Tensor:
    """The logits a test image is judged by: its own, or (test-time flip) summed with its mirror's."""
    out = forward(xb)
    return out + forward(xb.flip(3)) if tta_flip else out


def estimate_seconds(spec: ArchSpec, data: Dataset, schedule: Schedule, device: str = "auto",
                     steps: int = 4) -> float:
    """Rough wall time of `train` from a few timed steps (evaluation ~ 1/3 of a train step per image)."""
    eng = Engine(spec, data, schedule, device=device)
    eng.run_epoch(max_steps=1)  # warm-up
    t0 = time.perf_counter()
    _, correct, n = eng.run_epoch(max_steps=steps)
    correct.item()
    per_image = (time.perf_counter() - t0) / max(1, n)
    return schedule.epochs * per_image * (data.n_train + data.n_test / 3)


@torch.no_grad()
def evaluate(spec: ArchSpec, state: dict, data: Dataset, device: str | torch.device = "auto",
             tta_flip: bool = False) -> float:
    """Test accuracy of `spec` with weights `state` (e.g. a pruned net before fine-tuning); with
    `tta_flip`, of the logits summed over each image and its mirror, as `Engine.evaluate`."""
    dev = resolve_device(device) if isinstance(device, str) else device
    batch = eval_batch_size(data.size)
    check_memory(spec, batch, dev)
    model = build_with(spec, state)
    model = model.to(dev).eval()
    loader = data.loader("test", batch, train=False, device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    tta = tta_flip and data.flip  # as Engine: no mirror test where a mirror is another class
    for xb, yb in loader:
        correct += (eval_logits(model, xb, tta).argmax(1) == yb).sum()
    return correct.item() / loader.n


def _fingerprint(spec: ArchSpec, data: Dataset, schedule: Schedule, seed: int, init_state: dict | None,
                 hooks: list[TrainHook] | tuple = (), start_epoch: int = 0) -> str:
    h = hashlib.sha256()
    ident = [spec.identity(), schedule.to_dict(), seed, data.name, data.n_train]
    if hooks:  # runs without hooks keep the fingerprints they had before hooks existed
        ident.append([hk.key() for hk in hooks])
    if start_epoch:
        ident.append({"start_epoch": start_epoch})
    h.update(json.dumps(ident, sort_keys=True, default=str).encode())
    if init_state is not None:
        for k, v in init_state.items():
            h.update(k.encode())
            # the raw bytes (the same as numpy's, so fingerprints stand), for dtypes numpy lacks (bfloat16) too
            h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def train(spec: ArchSpec, data: Dataset, schedule: Schedule, *, seed: int = 0, device: str = "auto",
          out_dir: str | os.PathLike | None = None, checkpoint_every: int | None = None, resume: bool = True,
          init_state: dict | None = None, compile: bool = False,
          progress: Callable[[EpochStats], None] | None = None, hooks: list[TrainHook] | tuple = (),
          start_epoch: int = 0, sync_bn: bool = False) -> Result:
    """Train `spec` from scratch (or from `init_state` for fine-tuning) and return a Result.

    Under torchrun (WORLD_SIZE > 1) every process calls this with the same arguments and they
    train one network together (`archsearch.distributed`): rank 0 takes the run folder's lock
    and writes the checkpoints and the result; `progress` is called on rank 0 only.

    With `out_dir`, a checkpoint is written every `checkpoint_every` epochs (default: the
    schedule's preset's) and at the end;
    calling again with the same arguments resumes from it (and returns at once when the
    run is complete), with results identical to an uninterrupted run. `hooks` act while it
    trains (`TrainHook`: regularisers, epoch-end steps). `start_epoch` k > 0 starts from
    `init_state` at epoch k of the schedule (its learning rate there) and trains the rest:
    a lottery ticket rewound to epoch k. `result.json`,
    `spec.json` and `model.pt` are written to `out_dir` at the end.
    """
    if spec.num_classes != data.num_classes:
        raise ArchsearchError(f"spec has {spec.num_classes} classes but {data.name} has {data.num_classes}")
    if checkpoint_every is None:  # the preset's; a schedule made from a config of another name: the config's default
        named = PRESETS.get(schedule.preset)
        checkpoint_every = named.checkpoint_every if named else TrainConfig.__dataclass_fields__["checkpoint_every"].default
    if checkpoint_every < 1:
        raise ArchsearchError(f"checkpoint interval must be at least 1 epoch, got {checkpoint_every}")
    check_seed(seed)
    if not (isinstance(start_epoch, int) and 0 <= start_epoch < schedule.epochs):
        raise ArchsearchError(f"start epoch must be in [0, {schedule.epochs}), got {start_epoch!r}")
    if start_epoch and init_state is None:
        raise ArchsearchError("starting at a later epoch needs the weights of that epoch (init_state)")
    dist = current()
    args = (spec, data, schedule, seed, device, None if out_dir is None else Path(out_dir), checkpoint_every, resume,
            init_state, compile, progress if dist.main else None, hooks, start_epoch, dist, sync_bn)
    try:
        if out_dir is None or not dist.main:
            return _train(*args)
        with RunLock(out_dir):  # one process per run folder: a second one gets one clear line
            return _train(*args)
    except RuntimeError as e:
        if dist.enabled and _lost_peer(e):  # another process died: the machine's failure, not a bug here
            raise ArchsearchError(f"rank {dist.rank}: lost contact with the other training processes "
                                  f"({clip(e, 160)})") from None
        raise


def _lost_peer(e: RuntimeError) -> bool:
    text = str(e)
    return isinstance(e, getattr(torch.distributed, "DistError", ())) or any(
        k in text for k in ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe"))


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ArchsearchError(f"seed must be a whole number in [0, {MAX_SEED}], got {seed!r}")
    return seed


def load_checkpoint(path: Path, dev: torch.device) -> dict:
    """A checkpoint as plain data (`_io.load_torch`: a regular file within the size limit,
    unpickled by torch's restricted loader, so a crafted checkpoint in a shared run folder
    cannot run code), its tensors in place and its numbers checked like every record we
    read (`schemas.CheckpointRecord`: a NaN in its history would end in result.json)."""
    from .schemas import CheckpointRecord, check

    again = "delete it to start the run over"
    ck = load_torch(path, "checkpoint", map_location=dev, hint=again)
    ok = (isinstance(ck, dict) and isinstance(ck.get("model"), dict) and isinstance(ck.get("opt"), dict)
          and isinstance(ck.get("loader_rng"), torch.Tensor)
          and all(isinstance(ck.get(k, torch.zeros(1, dtype=torch.uint8)), torch.Tensor)
                  for k in ("torch_rng", "cuda_rng")))
    if not ok:
        raise ArchsearchError(f"{path} is not an archsearch checkpoint ({again})")
    try:
        check(CheckpointRecord, ck, f"checkpoint {path}")
    except ArchsearchError as e:
        raise ArchsearchError(f"{e} ({again})") from None
    return ck


def _global_rng(dev: torch.device) -> dict[str, torch.Tensor]:
    """The global RNG states that dropout (and any other layer drawing at random) uses, for
    the checkpoint: the CPU generator's, and on CUDA the device's too."""
    out = {"torch_rng": torch.get_rng_state()}
    if dev.type == "cuda":
        out["cuda_rng"] = torch.cuda.get_rng_state(dev)
    return out


def _set_global_rng(ck: dict, dev: torch.device) -> None:
    """Restore `_global_rng` (older checkpoints have none: they resume with the seed's state)."""
    if ck.get("torch_rng") is not None:
        torch.set_rng_state(ck["torch_rng"].to("cpu"))
    if dev.type == "cuda" and ck.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ck["cuda_rng"].to("cpu"), dev)


def _train(spec: ArchSpec, data: Dataset, schedule: Schedule, seed: int, device: str, out: Path | None,
           checkpoint_every: int, resume: bool, init_state: dict | None, compile: bool,
           progress: Callable[[EpochStats], None] | None, hooks: list[TrainHook] | tuple = (),
           start_epoch: int = 0, dist: Dist = SINGLE, sync_bn: bool = False) -> Result:
    ckpt_path = out / "checkpoint.pt" if out is not None else None
    ck = None
    if ckpt_path is not None and resume and ckpt_path.exists():  # before any allocation, and before the model
        ck = load_checkpoint(ckpt_path, torch.device("cpu") if dist.enabled else resolve_device(device))
    eng = Engine(spec, data, schedule, seed=seed, device=device, compile=compile, init_state=init_state, hooks=hooks,
                 dist=dist, sync_bn=sync_bn)
    counts = count(spec)
    fp = _fingerprint(spec, data, schedule, seed, init_state, hooks, start_epoch)
    history: list[dict] = []
    start, elapsed = start_epoch, 0.0
    # the lr of every epoch's first step, as this code's rule computes it: a checkpoint records
    # it, so that a run resumed under a changed rule (a fix to the drops) stops instead of
    # mixing two schedules (the fingerprint hashes the settings, not the rule)
    steps = len(eng.train_loader)
    lr_rule = [round(schedule.lr_at_step(e, 0, steps), 12) for e in range(schedule.epochs)]
    if ck is not None:
        if ck["fingerprint"] != fp:
            raise ArchsearchError(f"{ckpt_path} belongs to a run with other settings; "
                                  "pass another --out, or delete it to start over")
        if isinstance(ck.get("lr_rule"), list) and ck["lr_rule"] != lr_rule:
            raise ArchsearchError(f"{ckpt_path} was trained under another learning-rate rule (archsearch "
                                  f"{ck.get('archsearch_version', '?')}); delete it to train again under this one")
        try:
            eng.model.load_state_dict(ck["model"])
            eng.opt.load_state_dict(ck["opt"])
            eng.train_loader.load_state_dict({"generator": ck["loader_rng"].to("cpu")})
            _set_global_rng(ck, eng.dev)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise ArchsearchError(f"checkpoint {ckpt_path} does not fit this run ({clip(e, 120)}); "
                                  "delete it to start over") from None
        history, start, elapsed = ck["history"], ck["epoch"], float(ck["elapsed"])
    best = max((h["test_acc"] for h in history), default=0.0)
    timer = _Timer(eng.dev)
    for epoch in range(start, schedule.epochs):
        lr = schedule.lr_at_step(epoch, 0, len(eng.train_loader))  # a one-cycle schedule moves it every step
        eng.set_lr(lr)
        timer.start()
        loss_sum, correct, n = eng.run_epoch(epoch=epoch)
        for h in eng.hooks:
            h.epoch_end(eng.model, epoch)
        test_correct = eng.evaluate()
        secs = timer.stop()
        # the one host sync of the epoch
        train_loss, train_acc = (loss_sum / n).item(), correct.item() / n
        test_acc = test_correct.item() / eng.test_loader.n
        if not math.isfinite(train_loss):
            raise Diverged(f"training diverged at epoch {epoch + 1} (loss {train_loss}); try a lower lr")
        elapsed += secs
        best = max(best, test_acc)
        eta = (schedule.epochs - epoch - 1) * elapsed / (epoch + 1 - start_epoch)
        stats = EpochStats(epoch + 1, schedule.epochs, train_loss, train_acc, test_acc, best, lr, secs, eta)
        history.append(stats.to_dict())
        if progress is not None:
            progress(stats)
        last = epoch + 1 == schedule.epochs
        if ckpt_path is not None and dist.main and ((epoch + 1) % checkpoint_every == 0 or last):
            torch_save({"fingerprint": fp, "epoch": epoch + 1, "model": eng.model.state_dict(),
                        "opt": eng.opt.state_dict(), "loader_rng": eng.train_loader.generator.get_state(),
                        **_global_rng(eng.dev), "history": history, "elapsed": elapsed,
                        "archsearch_version": __version__,
                        "lr_rule": lr_rule, **({"start_epoch": start_epoch} if start_epoch else {})}, ckpt_path)
    if not history:
        raise ArchsearchError("no epochs were run")
    best_h = max(history, key=lambda h: h["test_acc"])
    result = Result(
        best_acc=best_h["test_acc"], final_acc=history[-1]["test_acc"], best_epoch=best_h["epoch"],
        epochs=schedule.epochs, history=history, params=counts.params, params_nonzero=counts.params_nonzero,
        macs=counts.macs_nonzero, flops=counts.flops, original_flops=counts.original_flops,
        train_seconds=elapsed, device=str(eng.dev),
        device_name=device_name(eng.dev) + (f" x {dist.world} processes" if dist.enabled else ""),
        torch_version=torch.__version__, archsearch_version=__version__, seed=seed, data=data.name,
        arch=spec.name, schedule=schedule.to_dict(),
        preprocess={"size": spec.input_size, "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std],
                    "scale": "pixels / 255, then (x - mean) / std per channel, RGB, N x C x H x W",
                    "classes": [str(c) for c in (getattr(data, "classes", None) or [])]},
    )
    if out is not None and dist.main:
        spec.save(out / "spec.json")
        torch_save(eng.model.state_dict(), out / "model.pt")
        write_json(out / "result.json", result.to_dict())
    dist.barrier()  # every process returns once the result is written
    return result


class _Timer:
    """Wall time on CPU; CUDA events on GPU (read after the epoch's one sync)."""

    def __init__(self, dev: torch.device):
        self.cuda = dev.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self.e0, self.e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.e0.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.e1.record()
            self.e1.synchronize()
            return self.e0.elapsed_time(self.e1) / 1000.0
        return time.perf_counter() - self.t0


def load_result(path: str | os.PathLike) -> Result:
    from ._io import read_json
    from .schemas import ResultModel, check

    d = read_json(path, "result")
    check(ResultModel, d, str(path))
    return Result.from_dict({k: d[k] for k in Result.__dataclass_fields__ if k in d})


__all__ = ["PRESETS", "TrainConfig", "get_preset", "Schedule", "make_schedule", "train", "TrainHook", "BNL1", "evaluate", "estimate_seconds", "Result", "EpochStats", "Engine",
           "Diverged", "SCHEDULE_KINDS"]
