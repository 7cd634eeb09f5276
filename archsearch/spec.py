"""ArchSpec: a whole network as plain data (schema 2: channel groups).

Every network archsearch trains (base, pruned, guided, transferred, uniform, random) is
one `ArchSpec`, built by one builder (`archsearch.archs.build`). A family declares its
**channel groups**, the sets of channels that must keep one width (a VGG conv's outputs;
a ResNet block's inner conv; in PreResNet and DenseNet the channels that a channel-selection
layer lets through from a stream whose own width stays fixed), and the spec stores one width
per group, its base width and its stage (the feature-map size it lives at). Coupling is the
family's data (`archsearch.archs`), never re-derived by callers.
A spec's JSON names its groups, so it asks its family for their names through the registry
(`archsearch.families`), which sits below this module; the families themselves build on it.

Beside the widths a spec may carry:
- `masks`: one boolean mask per conv for sparse networks, keyed by the conv's module name,
  bit-packed base64 in the JSON, so a spec stays one plain JSON file;
- `selected`: for selection groups, which channels of the stream they read (a pruned
  PreResNet's kept channels); without it a selection reads channels spread evenly over
  its stream;
- `blocks`: one keep flag per residual block (depth pruning); None keeps every block;
- `width`: the width multiplier of the base net, which fixes the widths no group holds
  (residual streams, DenseNet's growth).

Schema-1 files (VGG only: one width per conv layer, masks as a list in layer order) are
read unchanged: for VGG a group is a conv layer.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._io import parse_json, read_json, write_json
from .errors import ArchsearchError
from .families import get_family
from .schemas import ArchSpecModel, check

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
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
    """One network. `widths[i]` is the width of channel group i (in the family's group
    order), `stages[i]` its stage; `base_widths` the widths of the unpruned network this spec
    is measured against (same family, depth and width multiplier), so kept ratios are
    `widths / base_widths`. `masks[name]`, if given, is a bool array shaped like that conv's
    weight (out, in, k, k); `meta` holds provenance (what produced the spec, with which settings).
    """

    family: str
    depth: int
    widths: list[int]
    stages: list[int]
    num_classes: int
    in_channels: int = 3
    input_size: int = 32
    base_widths: list[int] | None = None
    masks: dict[str, np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    width: float = 1.0
    selected: dict[str, list[int]] | None = None
    blocks: list[bool] | None = None

    def __post_init__(self) -> None:
        self.widths = [int(w) for w in self.widths]
        self.stages = [int(s) for s in self.stages]
        self.width = float(self.width)
        if self.base_widths is not None:
            self.base_widths = [int(w) for w in self.base_widths]
        if self.masks is not None:
            if not isinstance(self.masks, dict):
                raise ArchsearchError("spec masks must be keyed by conv module name")
            self.masks = {str(k): np.asarray(m, dtype=bool) for k, m in self.masks.items()}
        if self.selected is not None:
            self.selected = {str(k): [int(i) for i in v] for k, v in self.selected.items()}
        if self.blocks is not None:
            self.blocks = [bool(b) for b in self.blocks]
        self.validate()

    # -- checks -------------------------------------------------------------------------
    def validate(self) -> None:
        """Structural checks that hold for every family; the family adds its own at build."""
        n = len(self.widths)
        if n == 0:
            raise ArchsearchError("spec has no channel groups")
        if any(w < 1 for w in self.widths):
            bad = [i for i, w in enumerate(self.widths) if w < 1]
            raise ArchsearchError(f"spec has channel groups with fewer than 1 channel: {bad}")
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
        if not (0 < self.width <= 16):
            raise ArchsearchError(f"spec width multiplier must be in (0, 16], got {self.width}")
        if self.masks is not None:
            empty = sorted(k for k, m in self.masks.items() if not m.any())
            if empty:
                raise ArchsearchError(f"the masks of conv(s) {', '.join(empty)} keep no weight at all "
                                      "(such a layer cuts the network in two)")

    # -- derived ------------------------------------------------------------------------
    @property
    def num_stages(self) -> int:
        return self.stages[-1] + 1

    @property
    def sparse(self) -> bool:
        return self.masks is not None

    def density(self) -> dict[str, float] | None:
        """Per-conv fraction of weights kept, or None for a dense spec."""
        if self.masks is None:
            return None
        return {k: float(m.mean()) for k, m in self.masks.items()}

    def ratios(self) -> list[float] | None:
        """Per-group kept channel ratio against `base_widths`."""
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
        return self.family if self.depth == 0 else f"{self.family}{self.depth}"  # depth 0: the name says it (tv.X)

    def replace(self, **changes: Any) -> "ArchSpec":
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        try:
            groups = [g.name for g in get_family(self.family).groups(self)]
        except ArchsearchError:
            groups = None
        d: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "family": self.family,
            "depth": self.depth,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "input_size": self.input_size,
            "width": self.width,
            "groups": groups if groups is not None and len(groups) == len(self.widths) else None,
            "widths": list(self.widths),
            "stages": list(self.stages),
            "base_widths": None if self.base_widths is None else list(self.base_widths),
            "selected": None if self.selected is None else {k: list(v) for k, v in self.selected.items()},
            "blocks": None if self.blocks is None else list(self.blocks),
            "density": self.density(),
            "masks": None if self.masks is None else {k: encode_mask(m) for k, m in self.masks.items()},
            "meta": self.meta,
        }
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "spec") -> "ArchSpec":
        """A spec from JSON data, checked completely (`schemas.ArchSpecModel`) before use."""
        if isinstance(d, dict) and d.get("schema", 1) not in READABLE_SCHEMAS:
            raise ArchsearchError(f"{where}: spec schema {d.get('schema')!r} is not supported "
                                  f"(this archsearch reads {', '.join(map(str, READABLE_SCHEMAS))})")
        m = check(ArchSpecModel, d, where)
        masks = None
        if isinstance(m.masks, dict):
            masks = {k: decode_mask(mk.model_dump()) for k, mk in m.masks.items()}
        elif m.masks is not None:  # schema 1: one mask per conv layer, in layer order
            masks = _masks_by_name(m.family, m.depth, [decode_mask(mk.model_dump()) for mk in m.masks], where)
        width = m.width if m.schema_ == 2 else _schema1_width(m.meta)
        try:
            spec = cls(family=m.family, depth=m.depth, widths=m.widths, stages=m.stages, num_classes=m.num_classes,
                       in_channels=m.in_channels, input_size=m.input_size, base_widths=m.base_widths, masks=masks,
                       meta=dict(m.meta), width=width, selected=m.selected, blocks=m.blocks)
            if m.groups is not None:
                names = [g.name for g in get_family(spec.family).groups(spec)]
                if names != list(m.groups):
                    raise ArchsearchError(f"its groups do not match {spec.name}'s channel groups "
                                          f"({len(m.groups)} named, {len(names)} expected)")
            return spec
        except ArchsearchError as e:
            raise ArchsearchError(f"{where}: {e}") from None

    def identity(self) -> dict[str, Any]:
        """What run fingerprints hash: `to_dict()`, except that a spec schema 1 could hold
        (VGG, no selections or block flags) hashes as schema 1 wrote it, so that runs made
        before schema 2 keep their fingerprints and resume."""
        if self.family != "vgg" or self.selected is not None or self.blocks is not None:
            return self.to_dict()

        names = get_family(self.family).conv_names(self.depth)
        masks = None if self.masks is None else [self.masks[n] for n in names]
        return {"schema": 1, "family": self.family, "depth": self.depth, "num_classes": self.num_classes,
                "in_channels": self.in_channels, "input_size": self.input_size, "widths": list(self.widths),
                "stages": list(self.stages),
                "base_widths": None if self.base_widths is None else list(self.base_widths),
                "density": None if masks is None else [float(m.mean()) for m in masks],
                "masks": None if masks is None else [encode_mask(m) for m in masks], "meta": self.meta}

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


def _schema1_width(meta: dict) -> float:
    w = meta.get("width") if isinstance(meta, dict) else None
    return float(w) if isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w <= 16 else 1.0


def _masks_by_name(family: str, depth: int, masks: list[np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Schema 1's mask list (VGG, one per conv layer in order) keyed by the convs' module names."""
    fam = get_family(family)
    names = fam.conv_names(depth)
    if len(masks) != len(names):
        raise ArchsearchError(f"{where}: {len(masks)} masks for {family}{depth}'s {len(names)} conv layers")
    return dict(zip(names, masks))
