"""What a run leaves behind: result.json, a training checkpoint's plain data, proposal
records, the last-pattern pointer, transfer result rows and a sensitivity analysis's points."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, Field, model_validator

from ..config import TrainConfig
from ..errors import ArchsearchError
from ..limits import MAX_EPOCHS, MAX_WIDTH
from .base import Epochs, Model, NonNeg, PositiveInt, Seed, Unit

def _train_config(d: dict[str, Any]) -> dict[str, Any]:
    """A recorded training config holds to `config.TrainConfig`'s own checks (one type: no
    second copy of its fields here); the plain dict is kept, as every record's is."""
    try:
        TrainConfig.from_dict(d)
    except ArchsearchError as e:
        raise ValueError(str(e)) from None
    return d


# the resolved config of a run (`TrainConfig.to_dict`); absent from records made before it was kept
RecordedConfig = Annotated[dict[str, Any], AfterValidator(_train_config)]


class EpochRecord(Model):
    epoch: PositiveInt
    test_acc: Unit
    train_loss: Optional[float] = None
    train_acc: Optional[Unit] = None
    best_acc: Optional[Unit] = None
    lr: Optional[float] = None
    seconds: Optional[NonNeg] = None
    eta: Optional[NonNeg] = None
    epochs: Optional[PositiveInt] = None


class Preprocess(Model):
    size: Annotated[int, Field(ge=1, le=MAX_WIDTH)]
    mean: Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1, max_length=4)]
    std: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1, max_length=4)]
    scale: Annotated[str, Field(max_length=200)]
    classes: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=100_000)]


class ResultModel(Model):
    best_acc: Unit
    final_acc: Unit
    best_epoch: PositiveInt
    epochs: Epochs
    history: list[EpochRecord]
    params: Annotated[int, Field(ge=0)]
    params_nonzero: Annotated[int, Field(ge=0)]
    macs: Annotated[int, Field(ge=0)]
    flops: Annotated[int, Field(ge=0)]
    original_flops: Annotated[int, Field(ge=0)]
    train_seconds: NonNeg
    device: str
    device_name: str
    torch_version: str
    archsearch_version: str
    seed: Seed
    data: str
    arch: str
    schedule: dict[str, Any]
    date: str
    counting: str
    preprocess: Optional[Preprocess] = None
    config: Optional[RecordedConfig] = None


class CheckpointRecord(Model):
    """The plain data of a training checkpoint (`train.load_checkpoint` checks its tensors).
    Its history and time go on into result.json, so they are held to the same rules."""

    fingerprint: str
    epoch: Annotated[int, Field(ge=0, le=MAX_EPOCHS)]
    start_epoch: Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = 0
    elapsed: NonNeg
    history: list[EpochRecord]
    lr_rule: Optional[list[float]] = None
    config: Optional[RecordedConfig] = None

    @model_validator(mode="after")
    def _consistent(self) -> "CheckpointRecord":
        if len(self.history) != self.epoch - self.start_epoch:
            raise ValueError(f"history has {len(self.history)} epochs, but the checkpoint is at epoch {self.epoch} "
                             f"of a run that started at {self.start_epoch}")
        return self


class ProposalRecord(Model):
    proposer: str
    method: str
    kind: Literal["channels", "sparsity", "depth"]
    seed: Seed
    settings: dict[str, Any]
    # None: not tested (a method that trains nothing, unless asked: `propose(test_untrained=...)`)
    base_acc: Optional[Unit] = None
    base_final_acc: Optional[Unit] = None
    pruned_acc: Optional[Unit] = None
    info: dict[str, Any]
    run_dir: str
    base_epochs: Annotated[int, Field(ge=0, le=MAX_EPOCHS)]  # 0: no base net trained (pruning at initialisation)
    base_seconds: NonNeg
    device: str
    torch_version: str
    archsearch_version: str
    date: str


class LastPattern(Model):
    path: str


class SensitivityPoint(Model):
    """One line of a sensitivity analysis's journal (`points.jsonl`): one unit pruned at one
    ratio, tested without retraining (the unpruned net: unit "unpruned", ratio 0)."""

    unit: Annotated[str, Field(min_length=1, max_length=200)]
    ratio: Annotated[float, Field(ge=0, lt=1)]
    kept: Annotated[int, Field(ge=1)]
    of: Annotated[int, Field(ge=1)]
    acc: Unit
    params: Annotated[int, Field(ge=0)]
    macs: Annotated[int, Field(ge=0)]
    seconds: Optional[NonNeg] = None


class TransferRow(Model):
    generator: str
    params: NonNeg
    macs: NonNeg
    best_acc_mean: Annotated[float, Field(ge=0, le=100)]
    best_acc_std: Optional[Annotated[float, Field(ge=0, le=100)]] = None  # None: one seed (no sample std)
    final_acc_mean: Optional[Annotated[float, Field(ge=0, le=100)]] = None  # the headline (older files lack it)
    final_acc_std: Optional[Annotated[float, Field(ge=0, le=100)]] = None
    budget: Optional[str] = None
    seeds: Optional[PositiveInt] = None
    kind: Optional[str] = None

