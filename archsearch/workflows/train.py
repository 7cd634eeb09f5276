"""One training run as `archsearch train` makes it: TARGET's base net or a spec file, a
schedule of the resolved config, a run folder, and optionally N processes under torchrun.

Every argument, the data included, is checked in this process before anything trains or
any rank starts, so that a bad one is one line (`prepare`); `execute` then trains.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributed import run as torchrun  # its `run` is looked up when called (tests replace it)
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from .. import train as training  # `training.train` is looked up when called (tests replace it)
from .._io import load_state
from ..config import TrainConfig
from ..counting import count, fmt_count
from ..data import AnyDataset, load_dataset, subset_train
from ..distributed import current, launched_by_torchrun, torchrun_command
from ..errors import ArchsearchError
from ..names import Target, parse_target
from ..progress import EpochProgress
from ..spec import ArchSpec


@dataclass
class TrainRun:
    """A checked run. With `launch`, this process only starts `nproc` ranks under torchrun,
    each of which prepares its own run (and loads its own data)."""

    target: Target
    config: TrainConfig
    kind: str                       # the schedule: scratch-e | scratch-b | finetune
    spec: ArchSpec
    schedule: training.Schedule
    data: AnyDataset | None         # None when launching
    init_state: dict | None         # finetune: the weights it starts from
    out: Path
    seed: int
    device: str
    compile: bool
    sync_bn: bool
    launch: bool
    main_rank: bool                 # this process reports (rank 0, or the launcher)

    def header(self) -> list[str]:
        """The net and the schedule, before training."""
        c, s = count(self.spec), self.schedule
        extra = f" (x{s.budget_factor:.2f} of {s.base_epochs}, {s.count})" if self.kind == "scratch-b" else ""
        return [f"{self.spec.name}-{self.target.data}: params {fmt_count(c.params_nonzero)}, "
                f"{fmt_count(c.macs_nonzero)} MACs ({fmt_count(c.flops)} FLOPs = 2xMACs) | {self.data.describe()}",
                f"{self.kind} {self.config.name}: {s.epochs} epochs{extra}, batch {s.batch_size}, lr {s.lr:g}, "
                f"seed {self.seed} -> {self.out}"]


def prepare(target: str, config: TrainConfig, *, spec_file: str | None = None, width: float | None = None,
            kind: str = "scratch-e", base_file: str | None = None, cap: float | None = None,
            count_convention: str | None = None, weights: str | None = None, data_dir: str | None = None,
            download: bool = True, device: str = "auto", out_dir: str | None = None,
            train_subset: int | None = None, nproc: int = 1, sync_bn: bool = False, seed: int = 0,
            compile: bool = False) -> TrainRun:
    """Check every argument and load the data. `width` is the width asked for (None: the
    config's), refused with a spec file, which has its widths already."""
    # --nproc N outside torchrun: this process checks every argument (the data included) and
    # only then starts the N ranks, so that a bad one is one line before any of them starts
    launch = nproc > 1 and not launched_by_torchrun()
    main_rank = launch or current().main  # current(): stray torchrun variables are refused here, at once
    tgt = parse_target(target)
    training.resolve_device(device)  # fail before any work
    spec = _spec(tgt, spec_file, width, config)
    base = _base(kind, spec, base_file)
    init_state = _init_state(kind, weights)
    schedule = training.make_schedule(config, kind, spec=spec, base=base, cap=cap, count_convention=count_convention)
    if launch:
        check_nproc(nproc, device, schedule.batch_size, sync_bn)
    data = subset_train(load_dataset(tgt.data, data_dir, download=download), train_subset)
    if launch:
        data = init_state = None  # found (and cached for the ranks); each rank loads its own
    wtag = "-spec" if spec_file else f"-w{config.width:g}"
    out = Path(out_dir or f"runs/{target}-{kind}-{config.name}{wtag}-s{seed}")
    return TrainRun(tgt, config, kind, spec, schedule, data, init_state, out, seed, device, compile, sync_bn,
                    launch, main_rank)


def execute(run: TrainRun) -> training.Result:
    """Train the prepared run (resuming from the run folder's last checkpoint)."""
    return training.train(run.spec, run.data, run.schedule, seed=run.seed, device=run.device, out_dir=run.out,
                          checkpoint_every=run.config.checkpoint_every, init_state=run.init_state,
                          compile=run.compile, sync_bn=run.sync_bn,
                          progress=EpochProgress(f"{run.spec.name}-{run.target.data} s{run.seed}"))


def _spec(tgt: Target, spec_file: str | None, width: float | None, config: TrainConfig) -> ArchSpec:
    if not spec_file:
        return tgt.base_spec(config.width)
    if width is not None:
        raise ArchsearchError("--width applies to TARGET's base net; a --spec file has its widths already")
    spec = ArchSpec.load(spec_file)
    if spec.num_classes != tgt.num_classes:
        raise ArchsearchError(f"{spec_file} has {spec.num_classes} classes but {tgt.data} has {tgt.num_classes}")
    return spec


def _base(kind: str, spec: ArchSpec, base_file: str | None) -> ArchSpec | None:
    """Scratch-B's base, matched in compute: a file, else the spec's own base widths."""
    if kind != "scratch-b":
        return None
    if base_file:
        return ArchSpec.load(base_file)
    if spec.base_widths is not None:
        return spec.replace(widths=spec.base_widths, masks=None, selected=None, blocks=None, meta={})
    raise ArchsearchError("scratch-b needs a base to match: pass --base FILE")


def _init_state(kind: str, weights: str | None) -> dict | None:
    if kind != "finetune" and weights:
        raise ArchsearchError("--weights is for --schedule finetune")
    if kind != "finetune":
        return None
    if not weights:
        raise ArchsearchError("--schedule finetune needs --weights FILE (a model.pt to start from)")
    return load_state(weights, "weights")


def check_nproc(nproc: int, device: str, batch_size: int, sync_bn: bool) -> None:
    """What `--nproc` needs, checked before any process starts: a rank finds out only after the
    others have started (12 CPU ranks took 3.4 GB to fail on the batch), or not at all."""
    cuda = training.resolve_device(device).type == "cuda"
    if cuda and torch.cuda.device_count() < nproc:  # one GPU per process
        gpus = torch.cuda.device_count()
        hint = f"use --nproc {gpus} or --device cpu" if gpus else "use --device cpu"
        raise ArchsearchError(f"--nproc {nproc} needs {nproc} GPUs, one per process; this machine has {gpus}: {hint}")
    if batch_size % nproc:  # every process takes an equal slice of each global batch
        fits = max(k for k in range(1, nproc + 1) if batch_size % k == 0)
        raise ArchsearchError(f"--nproc {nproc}: the batch of {batch_size} does not split evenly over {nproc} "
                              f"processes; use an --nproc that divides {batch_size}"
                              + (f" (e.g. --nproc {fits})" if fits > 1 else ""))
    if sync_bn and not cuda:
        raise ArchsearchError("--sync-bn needs several processes on GPUs (torch's SyncBatchNorm has no CPU kernel)")


def run_under_torchrun(nproc: int, args: list[str]) -> None:
    """Run `archsearch ARGS` as `nproc` processes under torchrun on this machine; a failed
    process is one line and exit 2 (its own error line is above it)."""
    argv = torchrun_command(nproc, args)[3:]  # torchrun's own arguments, run in this process
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its report is a traceback
    logging.getLogger("torch.distributed.run").setLevel(logging.ERROR)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # torchrun's default is 1
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as e:
        rank, first = min(e.failures.items(), key=lambda kv: kv[1].timestamp)
        how = f"signal {-first.exitcode}" if first.exitcode < 0 else f"exit code {first.exitcode}"
        # exit 2 is a rank's own error line (above): most often the configuration, which a
        # resume cannot mend; a killed or crashed rank is the machine's, and a resume goes on
        then = ("fix what its error line above says, then run the same command again" if first.exitcode == 2
                else "run the same command again to resume from the last checkpoint")
        raise ArchsearchError(f"{len(e.failures)} of {nproc} training processes failed (first: rank {rank}, "
                              f"{how}); {then}") from None
