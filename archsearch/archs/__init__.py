"""Architecture families: one registry, one builder.

A family turns an `ArchSpec` into an `nn.Module` (`build`) and into a list of `Op`s
(`ops`) that the counter in `archsearch.counting` reads, so params and MACs come from
the spec alone. Add a family (PreResNet, DenseNet, ...) by subclassing `Family` and
decorating it with `@register_family`; nothing else changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ArchsearchError
from ..spec import ArchSpec

FAMILIES: dict[str, "Family"] = {}


@dataclass(frozen=True)
class Op:
    """One layer as the counters see it. `hw` is the output side length; `nonzero` the
    number of kept weights of a masked conv (None = dense)."""

    kind: str  # conv | bn | relu | maxpool | avgpool | linear
    cin: int
    cout: int
    hw: int
    k: int = 1
    nonzero: int | None = None


class Family:
    name: ClassVar[str]
    depths: ClassVar[tuple[int, ...]]

    def base_widths(self, depth: int) -> list[int]:
        raise NotImplementedError

    def stages(self, depth: int) -> list[int]:
        raise NotImplementedError

    def check(self, spec: ArchSpec) -> None:
        """Family-specific checks beyond `ArchSpec.validate` (layer count, stage layout, masks)."""
        if spec.depth not in self.depths:
            raise ArchsearchError(f"{self.name} has depths {', '.join(map(str, self.depths))}, not {spec.depth}")
        expected = self.stages(spec.depth)
        if spec.stages != expected:
            raise ArchsearchError(
                f"{spec.name} has {len(expected)} conv layers with stages {expected}; "
                f"spec has {len(spec.stages)} with stages {spec.stages}"
            )
        if spec.masks is not None:
            for i, (m, shape) in enumerate(zip(spec.masks, self.conv_shapes(spec))):
                if tuple(m.shape) != shape:
                    raise ArchsearchError(f"mask {i} has shape {list(m.shape)}, conv {i} has {list(shape)}")

    def conv_shapes(self, spec: ArchSpec) -> list[tuple[int, ...]]:
        """Weight shape of every conv layer, in spec order."""
        raise NotImplementedError

    def ops(self, spec: ArchSpec) -> list[Op]:
        raise NotImplementedError

    def module(self, spec: ArchSpec) -> nn.Module:
        raise NotImplementedError

    def select_channels(self, model: nn.Module, keep: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """State dict of the narrower net that keeps, in conv layer i, the output channels
        where `keep[i]` is True (and the matching inputs of the next layer): the inherited
        weights of a channel-pruned net, for the fine-tune baseline."""
        raise NotImplementedError


def register_family(cls: type[Family]) -> type[Family]:
    FAMILIES[cls.name] = cls()
    return cls


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ArchsearchError(f"unknown architecture family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


_ARCH_RE = re.compile(r"^([a-z]+?)(\d+)$")


def parse_arch(name: str) -> tuple[Family, int]:
    """'vgg16' -> (the VGG family, 16). The one place arch names are read."""
    m = _ARCH_RE.match(name)
    if not m or m.group(1) not in FAMILIES:
        known = ", ".join(f"{f.name}{d}" for f in FAMILIES.values() for d in f.depths)
        raise ArchsearchError(f"unknown architecture {name!r}; known: {known}")
    fam, depth = FAMILIES[m.group(1)], int(m.group(2))
    if depth not in fam.depths:
        raise ArchsearchError(f"{fam.name} has depths {', '.join(map(str, fam.depths))}, not {depth}")
    return fam, depth


def all_archs() -> list[str]:
    return [f"{f.name}{d}" for f in FAMILIES.values() for d in f.depths]


def scale_widths(widths: list[int], width: float) -> list[int]:
    """Width multiplier for reduced-scale runs; every layer keeps at least 1 channel."""
    if not (0 < width <= 16):
        raise ArchsearchError(f"width multiplier must be in (0, 16], got {width}")
    return [max(1, int(round(w * width))) for w in widths]


def base_spec(arch: str, num_classes: int, width: float = 1.0, in_channels: int = 3,
              input_size: int = 32) -> ArchSpec:
    """The unpruned network `arch` (e.g. 'vgg16') at width multiplier `width`."""
    fam, depth = parse_arch(arch)
    widths = scale_widths(fam.base_widths(depth), width)
    return ArchSpec(
        family=fam.name, depth=depth, widths=widths, stages=fam.stages(depth),
        num_classes=num_classes, in_channels=in_channels, input_size=input_size,
        base_widths=list(widths), meta={"origin": "base", "width": width},
    )


def build(spec: ArchSpec) -> nn.Module:
    """The one builder: every network archsearch trains comes from here."""
    fam = get_family(spec.family)
    fam.check(spec)
    model = fam.module(spec)
    if spec.masks is not None:
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        for conv, mask in zip(convs, spec.masks):
            conv.register_buffer("weight_mask", torch.from_numpy(np.ascontiguousarray(mask)).to(conv.weight.dtype))
        apply_masks_(model)
    return model


def masked_weights(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(m.weight, m.weight_mask) for m in model.modules()
            if isinstance(m, nn.Conv2d) and hasattr(m, "weight_mask")]


@torch.no_grad()
def apply_masks_(model: nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
    """Zero every masked weight. The trainer calls this after each optimizer step, so
    pruned weights stay exactly 0 (Han et al. 2015 keep masks fixed while retraining)."""
    pairs = masked_weights(model) if pairs is None else pairs
    if pairs:
        torch._foreach_mul_([w for w, _ in pairs], [m for _, m in pairs])


from . import vgg  # noqa: E402,F401  (registers the VGG family)
