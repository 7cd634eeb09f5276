"""What a training run gives back: the statistics of each epoch (`EpochStats`) and the
`Result` that `train` returns and writes as result.json (`load_result` reads one, checked
against `schemas.ResultModel`)."""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass, field

from ._io import read_json
from .counting import fmt_count
from .schemas import ResultModel, check


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
    # the resolved training config (`config.TrainConfig.to_dict`) the run took; None in results
    # made before it was recorded, or by a schedule built by hand
    config: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Result":
        return cls(**d)

    def summary(self) -> str:
        return (f"{self.arch}-{self.data} seed {self.seed}: best {100 * self.best_acc:.2f}% "
                f"(epoch {self.best_epoch}), final {100 * self.final_acc:.2f}% | params {fmt_count(self.params_nonzero)}"
                f" | {fmt_count(self.macs)} MACs = {fmt_count(self.flops)} FLOPs (2xMACs) | "
                f"{self.epochs} epochs in {self.train_seconds:.1f}s on {self.device_name}")


def load_result(path: str | os.PathLike) -> Result:
    d = read_json(path, "result")
    check(ResultModel, d, str(path))
    return Result.from_dict({k: d[k] for k in Result.__dataclass_fields__ if k in d})


__all__ = ["EpochStats", "Result", "load_result"]
