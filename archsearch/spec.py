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
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._io import write_json
from .errors import ArchsearchError

SCHEMA_VERSION = 1


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
    n = int(np.prod(shape))
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
    def from_dict(cls, d: Any) -> "ArchSpec":
        if not isinstance(d, dict):
            raise ArchsearchError("spec must be a JSON object")
        schema = d.get("schema", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION:
            raise ArchsearchError(f"spec schema {schema} is not supported (this archsearch reads {SCHEMA_VERSION})")
        missing = [k for k in ("family", "depth", "widths", "stages", "num_classes") if k not in d]
        if missing:
            raise ArchsearchError(f"spec is missing {', '.join(missing)}")
        try:
            masks = d.get("masks")
            spec = cls(
                family=str(d["family"]),
                depth=_int(d["depth"], "depth"),
                widths=[_int(w, "widths") for w in _list(d["widths"], "widths")],
                stages=[_int(s, "stages") for s in _list(d["stages"], "stages")],
                num_classes=_int(d["num_classes"], "num_classes"),
                in_channels=_int(d.get("in_channels", 3), "in_channels"),
                input_size=_int(d.get("input_size", 32), "input_size"),
                base_widths=None if d.get("base_widths") is None
                else [_int(w, "base_widths") for w in _list(d["base_widths"], "base_widths")],
                masks=None if masks is None else [decode_mask(m) for m in _list(masks, "masks")],
                meta=dict(d.get("meta") or {}),
            )
        except ArchsearchError:
            raise
        except (TypeError, ValueError) as e:
            raise ArchsearchError(f"malformed spec: {e}") from None
        return spec

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArchsearchError(f"spec is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ArchSpec":
        try:
            text = open(path).read()
        except OSError as e:
            raise ArchsearchError(f"cannot read spec {path}: {e.strerror}") from None
        try:
            return cls.from_json(text)
        except ArchsearchError as e:
            raise ArchsearchError(f"{path}: {e}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArchSpec):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        return a == b


def _int(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise ArchsearchError(f"spec field {what} needs whole numbers, got {v!r}")
    return int(v)


def _list(v: Any, what: str) -> list:
    if not isinstance(v, list):
        raise ArchsearchError(f"spec field {what} must be a list")
    return v
