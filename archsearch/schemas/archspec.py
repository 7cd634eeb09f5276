"""ArchSpec JSON: schema 2 (one width per channel group, masks by conv name) and schema 1."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, model_validator

from ..limits import MAX_CLASSES, MAX_INPUT, MAX_LAYERS, MAX_WIDTH, MAX_WIDTH_MULT
from .base import Model, Stage, Width, _stages_ok

class MaskModel(Model):
    shape: Annotated[list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]], Field(min_length=1, max_length=8)]
    bits: str


ModuleName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]


class ArchSpecModel(Model):
    """Schema 2 (one width per channel group, masks by conv name) and schema 1 (VGG's chain:
    one width per conv layer, masks as a list in layer order), which is still read."""

    schema_: Literal[1, 2] = Field(default=1, alias="schema")
    family: str
    depth: Annotated[int, Field(ge=0, le=MAX_LAYERS)]  # 0: a family that names one network (tv.resnet18)
    widths: Annotated[list[Width], Field(min_length=1, max_length=MAX_LAYERS)]
    stages: Annotated[list[Stage], Field(min_length=1, max_length=MAX_LAYERS)]
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)]
    in_channels: Annotated[int, Field(ge=1, le=MAX_WIDTH)] = 3
    input_size: Annotated[int, Field(ge=1, le=MAX_INPUT)] = 32
    base_widths: Optional[Annotated[list[Width], Field(min_length=1, max_length=MAX_LAYERS)]] = None
    masks: Optional[list[MaskModel] | dict[ModuleName, MaskModel]] = None
    width: Annotated[float, Field(gt=0, le=MAX_WIDTH_MULT)] = 1.0
    groups: Optional[list[ModuleName]] = None
    selected: Optional[dict[ModuleName, Annotated[list[Annotated[int, Field(ge=0, lt=MAX_WIDTH)]],
                                                  Field(min_length=1, max_length=MAX_WIDTH)]]] = None
    blocks: Optional[Annotated[list[bool], Field(min_length=1, max_length=MAX_LAYERS)]] = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "ArchSpecModel":
        n = len(self.widths)
        for what, v in (("stages", self.stages), ("base_widths", self.base_widths), ("groups", self.groups)):
            if v is not None and len(v) != n:
                raise ValueError(f"{n} widths but {len(v)} {what}")
        if self.schema_ == 1 and isinstance(self.masks, dict):
            raise ValueError("schema 1 lists its masks in layer order; masks by name need schema 2")
        if self.schema_ == 2 and isinstance(self.masks, list):
            raise ValueError("schema 2 keys its masks by conv module name")
        if self.schema_ == 1 and (self.groups or self.selected or self.blocks):
            raise ValueError("groups, selected and blocks need schema 2")
        _stages_ok(self.stages)
        return self

