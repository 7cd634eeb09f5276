"""One experiment driver: a point's training (its schedule from the resolved `TrainConfig`, its
count, its run directory, the training, the result's numbers). `transfer --train`
(`compare.train_all`) and every sweep mode (`sweep.modes`) train through here, so the two never
drift apart. The statistics over seeds are `archsearch.stats`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import train as training  # the trainer is looked up when a point trains: tests stand in their own
from .archs import get_family
from .config import TrainConfig
from .counting import count
from .data import AnyDataset as Dataset
from .budget import conv_stages
from .spec import ArchSpec
from .train import EpochStats, Result, Schedule, make_schedule


# -- one point ---------------------------------------------------------------------------------------
@dataclass
class Point:
    """One training run of an experiment: a net, how it trains, and where (resumable there)."""

    spec: ArchSpec
    schedule: Schedule
    seed: int
    run_dir: Path
    init_state: dict | None = None  # inherited weights (fine-tuning) or a winning ticket
    start_epoch: int = 0            # a ticket rewound to this epoch


def point_schedule(config: TrainConfig, kind: str, spec: ArchSpec, base: ArchSpec,
                   cap: float | None = None) -> Schedule:
    """A from-scratch point's schedule: `kind` (scratch-e, scratch-b) of the resolved config;
    scratch-b's epochs from the compute of `base` against `spec`, its factor capped at `cap`
    (None: the config's). A sweep passes its [train] cap to every kind, as it always has: the
    schedule records it, and a run's fingerprint (so its resume) holds the schedule."""
    return make_schedule(config, kind, spec=spec, base=base, cap=cap)


def train_point(p: Point, data: Dataset, *, device: str, checkpoint_every: int,
                progress: Callable[[EpochStats], None] | None = None) -> Result:
    return training.train(p.spec, data, p.schedule, seed=p.seed, device=device, out_dir=p.run_dir,
                          checkpoint_every=checkpoint_every, init_state=p.init_state, start_epoch=p.start_epoch,
                          progress=progress)


def stage_summary(spec: ArchSpec) -> list:
    """Per stage: the width (or its distinct widths, in order, if they differ); for a sparse net the
    mean density of the stage's layers."""
    if spec.masks is not None:
        convs = get_family(spec.family).convs(spec)
        return [round(float(np.mean([spec.masks[c.name].mean() for c in convs if c.stage == k])), 3)
                for k in range(conv_stages(spec))]
    # the distinct widths of each stage, in order (a residual stage repeats a few widths many times)
    return [ws[0] if len(set(ws)) == 1 else list(dict.fromkeys(ws)) for ws in spec.stage_widths()]


def net_numbers(spec: ArchSpec) -> dict[str, Any]:
    """What a point's row says about its net: non-zero parameters and MACs, widths, stages."""
    c = count(spec)
    return {"params": c.params_nonzero, "macs": c.macs_nonzero, "widths": list(spec.widths),
            "stages": stage_summary(spec)}


def result_numbers(r: Result) -> dict[str, Any]:
    """What a point's row says about its training: accuracies in percent, time, where it ran."""
    return {"best_acc": 100 * r.best_acc, "final_acc": 100 * r.final_acc, "best_epoch": r.best_epoch,
            "train_seconds": r.train_seconds, "device": r.device_name, "torch_version": r.torch_version,
            "archsearch_version": r.archsearch_version}


__all__ = ["Point", "stage_summary", "point_schedule", "train_point", "net_numbers", "result_numbers"]
