"""Training from scratch as a plain function: `train(spec, data, schedule) -> Result`.

What to train with is a `TrainConfig` (`archsearch.config`: the presets are named ones, the
default is `paper`); `make_schedule` (`archsearch.schedule`) resolves it, for one schedule
kind, into a `Schedule` that carries the config: every result and checkpoint records the
resolved config the run took (`Result.config`) beside the schedule it stepped by.

Methods that act while a net trains (Network Slimming's BN-L1, SSS's block-scale penalty,
SFP's per-epoch filter zeroing) do so through `TrainHook`s (`archsearch.hooks`) passed to
`train`: a regulariser after backward and an epoch-end step; their `key()` joins the run's
fingerprint. Checkpoints and resuming are in `archsearch.checkpoint`, the result record in
`archsearch.result`; this module keeps the engine, the epoch loop and `train` itself, and
every name callers import from it.

The step loop never syncs with the host: loss and accuracy accumulate in device
tensors and are read with `.item()` once per epoch. On CUDA it runs bf16 autocast and
channels_last, optionally `torch.compile`, and times epochs with CUDA events.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from ._io import RunLock, torch_save, write_json
from .archs import apply_masks_, build_with, masked_weights
from .checkpoint import load_checkpoint, restore, save_checkpoint
from .config import PRESETS, TrainConfig, get_preset, is_whole
from .counting import check_memory, count
from .data import AnyDataset as Dataset
from .data.stream import eval_batch_size
from .distributed import SINGLE, Dist, check_batch, current
from .distributed import init as init_dist
from .errors import ArchsearchError, clip
from .hooks import BNL1, TrainHook
from .limits import MAX_SEED
from .result import EpochStats, Result, load_result
from .schedule import RECIPE_DEFAULTS, SCHEDULE_KINDS, Schedule, make_schedule
from .spec import ArchSpec


class Diverged(ArchsearchError):
    """The loss became NaN or infinite."""


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
             tta_flip: bool = False, indices=None) -> float:
    """Test accuracy of `spec` with weights `state` (e.g. a pruned net before fine-tuning); with
    `tta_flip`, of the logits summed over each image and its mirror, as `Engine.evaluate`; with
    `indices`, over those test images only (`data.stratified`: a fixed subset)."""
    dev = resolve_device(device) if isinstance(device, str) else device
    batch = eval_batch_size(data.size)
    check_memory(spec, batch, dev)
    model = build_with(spec, state)
    model = model.to(dev).eval()
    loader = data.loader("test", batch, train=False, device=dev, indices=indices)
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
    schedule's config's) and at the end;
    calling again with the same arguments resumes from it (and returns at once when the
    run is complete), with results identical to an uninterrupted run. `hooks` act while it
    trains (`TrainHook`: regularisers, epoch-end steps). `start_epoch` k > 0 starts from
    `init_state` at epoch k of the schedule (its learning rate there) and trains the rest:
    a lottery ticket rewound to epoch k. `result.json`,
    `spec.json` and `model.pt` are written to `out_dir` at the end.
    """
    if spec.num_classes != data.num_classes:
        raise ArchsearchError(f"spec has {spec.num_classes} classes but {data.name} has {data.num_classes}")
    checkpoint_every = _checkpoint_every(schedule, checkpoint_every)
    # the resolved config the run takes, recorded with its result and checkpoints; its width is
    # the net's own (a proposal's base net, a row's, a spec file's), whatever the preset says
    config = (schedule.config.override(checkpoint_every=checkpoint_every, width=spec.width)
              if schedule.config else None)
    check_seed(seed)
    if not (isinstance(start_epoch, int) and 0 <= start_epoch < schedule.epochs):
        raise ArchsearchError(f"start epoch must be in [0, {schedule.epochs}), got {start_epoch!r}")
    if start_epoch and init_state is None:
        raise ArchsearchError("starting at a later epoch needs the weights of that epoch (init_state)")
    dist = current()
    run = _Run(spec, data, schedule, config, checkpoint_every, seed=seed, device=device,
               out=None if out_dir is None else Path(out_dir), resume=resume, init_state=init_state,
               compile=compile, progress=progress if dist.main else None, hooks=hooks, start_epoch=start_epoch,
               dist=dist, sync_bn=sync_bn)
    try:
        if out_dir is None or not dist.main:
            return _train(run)
        with RunLock(out_dir):  # one process per run folder: a second one gets one clear line
            return _train(run)
    except RuntimeError as e:
        if dist.enabled and _lost_peer(e):  # another process died: the machine's failure, not a bug here
            raise ArchsearchError(f"rank {dist.rank}: lost contact with the other training processes "
                                  f"({clip(e, 160)})") from None
        raise


def _checkpoint_every(schedule: Schedule, given: int | None) -> int:
    """The checkpoint interval: the one given, else the schedule's config's (a schedule built by
    hand has none: its preset's, by name, else the config's default)."""
    if given is None:
        source = schedule.config or PRESETS.get(schedule.preset)
        given = source.checkpoint_every if source else TrainConfig.__dataclass_fields__["checkpoint_every"].default
    if given < 1:
        raise ArchsearchError(f"checkpoint interval must be at least 1 epoch, got {given}")
    return given


def _lost_peer(e: RuntimeError) -> bool:
    text = str(e)
    return isinstance(e, getattr(torch.distributed, "DistError", ())) or any(
        k in text for k in ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe"))


def check_seed(seed: int) -> int:
    if not is_whole(seed, 0, MAX_SEED):
        raise ArchsearchError(f"seed must be a whole number in [0, {MAX_SEED}], got {seed!r}")
    return seed


@dataclass
class _Run:
    """One call of `train`, its arguments checked and its config resolved."""

    spec: ArchSpec
    data: Dataset
    schedule: Schedule
    config: TrainConfig | None
    checkpoint_every: int
    seed: int
    device: str
    out: Path | None
    resume: bool
    init_state: dict | None
    compile: bool
    progress: Callable[[EpochStats], None] | None
    hooks: list[TrainHook] | tuple
    start_epoch: int
    dist: Dist
    sync_bn: bool


def _train(run: _Run) -> Result:
    ckpt = run.out / "checkpoint.pt" if run.out is not None else None
    ck = None
    if ckpt is not None and run.resume and ckpt.exists():  # before any allocation, and before the model
        ck = load_checkpoint(ckpt, torch.device("cpu") if run.dist.enabled else resolve_device(run.device))
    eng = Engine(run.spec, run.data, run.schedule, seed=run.seed, device=run.device, compile=run.compile,
                 init_state=run.init_state, hooks=run.hooks, dist=run.dist, sync_bn=run.sync_bn)
    fp = _fingerprint(run.spec, run.data, run.schedule, run.seed, run.init_state, run.hooks, run.start_epoch)
    steps = len(eng.train_loader)  # the lr of every epoch's first step (`checkpoint.restore` checks it)
    lr_rule = [round(run.schedule.lr_at_step(e, 0, steps), 12) for e in range(run.schedule.epochs)]
    history, start, elapsed = [], run.start_epoch, 0.0
    if ck is not None:
        history, start, elapsed = restore(ck, eng, ckpt, fp, lr_rule)
    config = run.config.to_dict() if run.config is not None else None

    def checkpoint(epoch: int, history: list[dict], elapsed: float) -> None:
        last = epoch == run.schedule.epochs
        if ckpt is not None and run.dist.main and (epoch % run.checkpoint_every == 0 or last):
            save_checkpoint(ckpt, eng, fingerprint=fp, epoch=epoch, history=history, elapsed=elapsed,
                            lr_rule=lr_rule, start_epoch=run.start_epoch, config=config)

    elapsed = _epochs(run, eng, history, start, elapsed, checkpoint)
    if not history:
        raise ArchsearchError("no epochs were run")
    result = _result(run, eng, history, elapsed, config)
    if run.out is not None and run.dist.main:
        run.spec.save(run.out / "spec.json")
        torch_save(eng.model.state_dict(), run.out / "model.pt")
        write_json(run.out / "result.json", result.to_dict())
    run.dist.barrier()  # every process returns once the result is written
    return result


def _epochs(run: _Run, eng: Engine, history: list[dict], start: int, elapsed: float,
            checkpoint: Callable[[int, list[dict], float], None]) -> float:
    """Train epochs `start`.. to the schedule's end, appending each one's statistics to
    `history` and checkpointing after it; gives back the seconds trained in all."""
    schedule = run.schedule
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
        eta = (schedule.epochs - epoch - 1) * elapsed / (epoch + 1 - run.start_epoch)
        stats = EpochStats(epoch + 1, schedule.epochs, train_loss, train_acc, test_acc, best, lr, secs, eta)
        history.append(stats.to_dict())
        if run.progress is not None:
            run.progress(stats)
        checkpoint(epoch + 1, history, elapsed)
    return elapsed


def _result(run: _Run, eng: Engine, history: list[dict], elapsed: float, config: dict | None) -> Result:
    spec, data, dist = run.spec, run.data, run.dist
    counts = count(spec)
    best_h = max(history, key=lambda h: h["test_acc"])
    return Result(
        best_acc=best_h["test_acc"], final_acc=history[-1]["test_acc"], best_epoch=best_h["epoch"],
        epochs=run.schedule.epochs, history=history, params=counts.params, params_nonzero=counts.params_nonzero,
        macs=counts.macs_nonzero, flops=counts.flops, original_flops=counts.original_flops,
        train_seconds=elapsed, device=str(eng.dev),
        device_name=device_name(eng.dev) + (f" x {dist.world} processes" if dist.enabled else ""),
        torch_version=torch.__version__, archsearch_version=__version__, seed=run.seed, data=data.name,
        arch=spec.name, schedule=run.schedule.to_dict(),
        preprocess={"size": spec.input_size, "mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std],
                    "scale": "pixels / 255, then (x - mean) / std per channel, RGB, N x C x H x W",
                    "classes": [str(c) for c in (getattr(data, "classes", None) or [])]},
        config=config,
    )


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

__all__ = ["PRESETS", "TrainConfig", "get_preset", "Schedule", "make_schedule", "train", "TrainHook", "BNL1", "evaluate",
           "estimate_seconds", "Result", "EpochStats", "Engine", "Diverged", "SCHEDULE_KINDS", "RECIPE_DEFAULTS",
           "load_result", "load_checkpoint", "resolve_device", "device_name", "check_seed", "eval_logits"]
