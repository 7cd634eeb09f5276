"""ArchSpec: a whole network as plain data.

Every network archsearch trains (base, pruned, guided, transferred, uniform, random) is
one `ArchSpec`, built by one builder (`archsearch.archs.build`). The spec lists the
output width of every conv layer and the stage it belongs to (a stage = the layers that
share one feature-map size), so the same shape serves VGG now and PreResNet/DenseNet
later: their families read the same lists and add their own block structure.

Sparse networks (magnitude pruning, guided sparsification) also carry one boolean mask
per conv layer; the masks travel in the JSON as bit-packed base64, so a spec stays a
single plain JSON file.
"""

from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._io import parse_json, read_json, write_json
from .errors import ArchsearchError

SCHEMA_VERSION = 1
SPEC_LIMIT = 512 << 20  # bytes: the masks of a full VGG-16 on ImageNet take about 25 MB of base64


def encode_mask(mask: np.ndarray) -> dict:
    mask = np.asarray(mask, dtype=bool)
    return {
        "shape": list(mask.shape),
        "bits": base64.b64encode(np.packbits(mask.ravel())).decode("ascii"),
    }


def decode_mask(obj: dict) -> np.ndarray:
    try:
        shape = tuple(int(s) for s in obj["shape"])
        raw = np.frombuffer(base64.b64decode(obj["bits"], validate=True), dtype=np.uint8)
    except (KeyError, TypeError, ValueError) as e:
        raise ArchsearchError(f"malformed mask in spec: {e}") from None
    n = math.prod(shape)
    if raw.size != (n + 7) // 8:
        raise ArchsearchError(f"malformed mask in spec: {raw.size} bytes for shape {list(shape)}")
    return np.unpackbits(raw, count=n).astype(bool).reshape(shape)


@dataclass
class ArchSpec:
    """One network. `widths[i]` is the output channels of conv layer i, `stages[i]` its stage.

    `base_widths` are the widths of the unpruned network this spec is measured against
    (same family, depth and width multiplier), so kept ratios are `widths / base_widths`.
    `masks[i]`, if given, is a bool array shaped like conv i's weight (out, in, k, k);
    `meta` holds provenance (what produced the spec, with which settings).
    """

    family: str
    depth: int
    widths: list[int]
    stages: list[int]
    num_classes: int
    in_channels: int = 3
    input_size: int = 32
    base_widths: list[int] | None = None
    masks: list[np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.widths = [int(w) for w in self.widths]
        self.stages = [int(s) for s in self.stages]
        if self.base_widths is not None:
            self.base_widths = [int(w) for w in self.base_widths]
        if self.masks is not None:
            self.masks = [np.asarray(m, dtype=bool) for m in self.masks]
        self.validate()

    # -- checks -------------------------------------------------------------------------
    def validate(self) -> None:
        """Structural checks that hold for every family; the family adds its own at build."""
        n = len(self.widths)
        if n == 0:
            raise ArchsearchError("spec has no conv layers")
        if any(w < 1 for w in self.widths):
            bad = [i for i, w in enumerate(self.widths) if w < 1]
            raise ArchsearchError(f"spec has layers with fewer than 1 channel: {bad}")
        if len(self.stages) != n:
            raise ArchsearchError(f"spec has {n} widths but {len(self.stages)} stage labels")
        if any(b < a for a, b in zip(self.stages, self.stages[1:])) or self.stages[0] != 0:
            raise ArchsearchError("spec stages must start at 0 and never decrease")
        if self.base_widths is not None and len(self.base_widths) != n:
            raise ArchsearchError(f"spec has {n} widths but {len(self.base_widths)} base widths")
        if self.base_widths is not None and any(b < 1 for b in self.base_widths):
            raise ArchsearchError("spec has base widths below 1 channel")
        if self.num_classes < 1 or self.in_channels < 1 or self.input_size < 1:
            raise ArchsearchError("spec needs num_classes, in_channels and input_size >= 1")
        if self.masks is not None and len(self.masks) != n:
            raise ArchsearchError(f"spec has {n} conv layers but {len(self.masks)} masks")

    # -- derived ------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return self.stages[-1] + 1

    @property
    def sparse(self) -> bool:
        return self.masks is not None

    def density(self) -> list[float] | None:
        """Per-layer fraction of conv weights kept, or None for a dense spec."""
        if self.masks is None:
            return None
        return [float(m.mean()) for m in self.masks]

    def ratios(self) -> list[float] | None:
        """Per-layer kept channel ratio against `base_widths`."""
        if self.base_widths is None:
            return None
        return [w / b for w, b in zip(self.widths, self.base_widths)]

    def stage_widths(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in range(self.num_stages)]
        for w, s in zip(self.widths, self.stages):
            out[s].append(w)
        return out

    @property
    def name(self) -> str:
        return f"{self.family}{self.depth}"

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "family": self.family,
            "depth": self.depth,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_size": self.input_size,
            "widths": list(self.widths),
            "stages": list(self.stages),
            "base_widths": None if self.base_widths is None else list(self.base_widths),
            "density": self.density(),
            "masks": None if self.masks is None else [encode_mask(m) for m in self.masks],
            "meta": self.meta,
        }
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "spec") -> "ArchSpec":
        """A spec from JSON data, checked completely (`schemas.ArchSpecModel`) before use."""
        from .schemas import ArchSpecModel, check

        if isinstance(d, dict) and d.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise ArchsearchError(f"{where}: spec schema {d.get('schema')!r} is not supported "
                                  f"(this archsearch reads {SCHEMA_VERSION})")
        m = check(ArchSpecModel, d, where)
        masks = None
        if m.masks is not None:
            masks = [decode_mask(mk.model_dump()) for mk in m.masks]
            empty = [i for i, mk in enumerate(masks) if not mk.any()]
            if empty:
                raise ArchsearchError(f"{where}: the masks of conv layer(s) {empty} keep no weight at all "
                                      "(such a layer cuts the network in two)")
        try:
            return cls(family=m.family, depth=m.depth, widths=m.widths, stages=m.stages, num_classes=m.num_classes,
                       in_channels=m.in_channels, input_size=m.input_size, base_widths=m.base_widths, masks=masks,
                       meta=dict(m.meta))
        except ArchsearchError as e:
            raise ArchsearchError(f"{where}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str, where: str = "spec") -> "ArchSpec":
        return cls.from_dict(parse_json(text, where), where)

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ArchSpec":
        return cls.from_dict(read_json(path, "spec", SPEC_LIMIT), str(path))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArchSpec):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        return a == b
