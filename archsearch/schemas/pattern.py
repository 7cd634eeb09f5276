"""The pattern file (`archsearch extract`'s output): schemas 1 and 2, channels, sparsity and depth."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, model_validator

from ..limits import MAX_EPOCHS, MAX_LAYERS, MAX_WIDTH_MULT
from .base import Epochs, Map3, MapK, Model, NonNeg, Seed, Stage, Unit, Width, _plain_name, _stages_ok

class MeanStd(Model):
    mean: float
    std: NonNeg


class PatternAccuracy(Model):
    """Over seeds; absent where the proposals were not tested (scored at initialisation)."""

    base: Optional[MeanStd] = None
    pruned: Optional[MeanStd] = None
    base_final: Optional[MeanStd] = None


class SensitivityOrigin(Model):
    """A pattern derived from a sensitivity analysis (`archsearch sensitivity`): each unit (a
    channel group, or a stage) pruned at the largest measured ratio whose accuracy drop stayed
    within `threshold` points (at most `max_ratio`), the others left whole."""

    threshold: NonNeg                 # accuracy drop, in points
    by: Literal["group", "stage"]
    ratios: Annotated[list[Annotated[float, Field(gt=0, lt=1)]], Field(min_length=1)]  # the ratios measured
    max_ratio: Optional[Annotated[float, Field(gt=0, lt=1)]] = None
    test_images: Optional[Annotated[int, Field(ge=1, le=1 << 31)]] = None  # a stratified test subset; None: all
    criterion: Optional[str] = None
    record: Optional[str] = None      # the analysis's sensitivity.json


class PatternProvenance(Model):
    method: str
    arch: str
    data: str
    ratio: float
    seeds: Annotated[list[Seed], Field(min_length=1)]
    epochs: Epochs
    width: Annotated[float, Field(gt=0, le=MAX_WIDTH_MULT)]
    archsearch_version: str
    command: str
    proposer: Optional[str] = None
    preset: Optional[str] = None
    torch_version: Optional[str] = None
    date: Optional[str] = None
    scale: Optional[str] = None
    devices: Optional[list[str]] = None
    train_subset: Optional[Annotated[int, Field(ge=1, le=1 << 31)]] = None
    variant: Optional[str] = None
    layer_ratios: Optional[list[Annotated[float, Field(ge=0, lt=1)]]] = None
    rounds: Optional[Annotated[int, Field(ge=1, le=100)]] = None
    ratio_per_round: Optional[Annotated[float, Field(gt=0, lt=1)]] = None
    rewind_epoch: Optional[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = None
    trained_epochs: Optional[Annotated[int, Field(ge=0, le=0)]] = None  # a proposer at initialisation: 0
    scored_images: Optional[Annotated[int, Field(ge=0, le=1 << 31)]] = None
    scored_batches: Optional[Annotated[int, Field(ge=0, le=1 << 31)]] = None
    sensitivity: Optional[SensitivityOrigin] = None  # derived from a sensitivity analysis, not the method's ratios


class LayerStats(Model):
    ratio_mean: Optional[list[Unit]] = None
    ratio_std: Optional[list[NonNeg]] = None
    density_mean: Optional[list[Unit]] = None
    density_std: Optional[list[NonNeg]] = None


class StageStats(LayerStats):
    # None for a stage without 3x3 convs (schema 2; 1x1 convs have densities alone)
    kernel_keep_mean: Optional[list[Optional[Map3]]] = None
    kernel_keep_std: Optional[list[Optional[Map3]]] = None


class ProposalSummary(Model):
    seed: Seed
    # one k x k map per conv (k its kernel size: 1, 3, a stem's 7, an EfficientNet's 5)
    layer_kernel_keep: Optional[list[Optional[MapK]]] = None


class Pattern(Model):
    schema_: Literal[1, 2] = Field(alias="schema")
    name: str
    kind: Literal["channels", "sparsity", "depth"]  # depth: per removable block, kept (1) or removed (0)
    method: str
    arch: str
    family: str
    depth: Annotated[int, Field(ge=0, le=MAX_LAYERS)]  # 0: a family that names one network (tv.resnet18)
    data: str
    ratio: Annotated[float, Field(ge=0, le=1)]
    stages: Annotated[list[Stage], Field(min_length=1, max_length=MAX_LAYERS)]
    base_widths: Annotated[list[Width], Field(min_length=1, max_length=MAX_LAYERS)]
    layer_names: Optional[list[Annotated[str, Field(min_length=1, max_length=200)]]] = None
    kernels: Optional[list[Annotated[int, Field(ge=1, le=15)]]] = None
    width: Optional[Annotated[float, Field(gt=0, le=MAX_WIDTH_MULT)]] = None
    layers: LayerStats
    stage: StageStats
    accuracy: PatternAccuracy
    provenance: PatternProvenance
    proposals: Optional[list[ProposalSummary]] = None

    @model_validator(mode="after")
    def _consistent(self) -> "Pattern":
        _plain_name(self.name, "pattern name")
        if self.arch != (self.family if self.depth == 0 else f"{self.family}{self.depth}"):
            raise ValueError(f"arch {self.arch!r} is not family {self.family!r} + depth {self.depth}")
        n = len(self.stages)
        if len(self.base_widths) != n:
            raise ValueError(f"{n} stage labels but {len(self.base_widths)} base widths")
        for what, v in (("layer_names", self.layer_names), ("kernels", self.kernels)):
            if v is not None and len(v) != n:
                raise ValueError(f"{n} stage labels but {len(v)} {what}")
        _stages_ok(self.stages)
        untested = self.provenance.trained_epochs == 0  # scored at initialisation: its nets were not tested
        for k in ("base", "pruned"):
            if getattr(self.accuracy, k) is None and not untested:
                raise ValueError(f"accuracy.{k} is missing (a pattern of a trained net records its accuracy)")
        n_stages = self.stages[-1] + 1
        what = "density" if self.kind == "sparsity" else "ratio"
        for group, length in (("layers", n), ("stage", n_stages)):
            for stat in ("mean", "std"):
                v = getattr(getattr(self, group), f"{what}_{stat}")
                if v is None or len(v) != length:
                    raise ValueError(f"{group}.{what}_{stat} must be a list of {length} numbers")
        if self.kind == "sparsity":
            km = self.stage.kernel_keep_mean
            if km is None or len(km) != n_stages:
                raise ValueError(f"stage.kernel_keep_mean must be {n_stages} 3x3 maps")
            for p in self.proposals or []:
                if p.layer_kernel_keep is None:
                    continue
                if len(p.layer_kernel_keep) != n:
                    raise ValueError(f"proposals: layer_kernel_keep must be {n} maps, one per conv")
                for i, m in enumerate(p.layer_kernel_keep):
                    k = self.kernels[i] if self.kernels is not None else None
                    if m is not None and (any(len(row) != len(m) for row in m) or (k is not None and len(m) != k)):
                        raise ValueError(f"proposals: layer_kernel_keep {i} must be a {k or len(m)}x{k or len(m)} map "
                                         "(the conv's kernel size)")
        return self

