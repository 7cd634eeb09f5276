"""Architecture families: one registry, one builder, channel groups as family data.

A family declares, for a depth and a width multiplier, its **channel groups** (`Group`):
the channels that must keep one width. Two kinds:
- `conv`: a layer's own output channels (every VGG conv; a ResNet block's first conv; a
  PreResNet bottleneck's two inner convs; the hidden linear layers of Network Slimming's
  ImageNet VGG-11, whose BatchNorm1d scales it prunes);
- `select`: the channels that a channel-selection layer lets through from a stream whose
  own width stays fixed (Network Slimming's `channel_selection` after a BN in PreResNet
  and DenseNet: the BN and the stream keep their width, the next conv reads only the
  selected channels).
Each group names the BN whose scale ranks its channels (Network Slimming's gamma), so that
zeroing that BN's scale and shift at a channel is the same function as removing it.

From a spec the family gives:
- `convs(spec)`: every conv by module name, with its weight shape and stage (masks of
  sparse nets are keyed by these names);
- `wires(spec)`: for each module whose shape a group sets, which group indexes its
  output dimension and which its input dimension: the one description of coupling, read
  by `narrow` (inherited weights) and by the checks;
- `ops(spec)`: the layers as the counters see them, so params and MACs come from the spec
  alone (`archsearch.counting`);
- `module(spec)`: the `nn.Module`.

Add a family in a module of its own: subclass `Family` (archs/base.py, with the records
above) and decorate it with `@register_family`, which puts it in the registry
(`archsearch.families`, below `archsearch.spec`, so that a spec can name its groups); then
import the module on the line below that imports the others.

Arch names: a dataset says which networks its names mean (`DatasetInfo.nets`: "cifar", the
paper's CIFAR networks, or "imagenet", its ImageNet ones). A family of the ImageNet networks
has an `alias`, the prefix users type for it there: under "imagenet" `vgg16` is `invgg16` and
`resnet50` is `inresnet50`; under "cifar" they are the CIFAR families. A family's own name
(`spec.name`, e.g. `invgg16`) is accepted under either. `parse_arch` is the one place that
reads them.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn

from ..errors import ArchsearchError, clip
from ..families import FAMILIES, get_family, register_family, register_prefix
from ..spec import ArchSpec
from .base import (GROUP_KINDS, NETS, Block, Conv, Family, Group, Op, Select, final_hw, he_init_, scale_width,
                   scale_widths, spread)

# each module registers its families; the order of this line is the order names are listed in
from . import vgg, resnet, preresnet, densenet, imagenet  # noqa: F401,I001  (isort: skip)

_ARCH_RE = re.compile(r"^([a-z]+?)([1-9]\d*)$")  # no leading zero: vgg016 would be a second name for vgg16


def _family_for(prefix: str, nets: str) -> Family | None:
    """The family a typed prefix means where a dataset's networks are `nets`: the alias of one
    of those networks' families ('vgg' under imagenet is invgg), else a family's own name."""
    for f in FAMILIES.values():
        if f.alias == prefix and f.nets == nets:
            return f
    return FAMILIES.get(prefix)


def arch_names(nets: str = "cifar") -> list[str]:
    """Every listed name a user can type where a dataset's networks are `nets`: the aliases of
    those networks' families first, then families by their own names."""
    out = [f"{f.alias}{d}" for f in FAMILIES.values() if f.alias and f.nets == nets for d in f.depths]
    return out + [f"{f.name}{d}" for f in FAMILIES.values() if _family_for(f.name, nets) is f for d in f.depths]


def parse_arch(name: str, nets: str = "cifar") -> tuple[Family, int]:
    """'vgg16' -> (the VGG family, 16): the CIFAR VGG where the dataset's networks are "cifar",
    the ImageNet VGG (invgg) where they are "imagenet"; 'invgg16' -> the ImageNet VGG under
    either. The one place arch names are read."""
    if nets not in NETS:
        raise ArchsearchError(f"unknown networks {nets!r}; known: {', '.join(NETS)}")
    if name.startswith("tv."):  # tv.resnet18, tv.mobilenet_v2: torchvision's own, under any nets
        return get_family(name), 0
    m = _ARCH_RE.match(name)
    fam = _family_for(m.group(1), nets) if m else None
    if fam is None:
        raise ArchsearchError(f"unknown architecture {name!r}; known ({nets} networks): {', '.join(arch_names(nets))}")
    depth = int(m.group(2))
    if not fam.accepts(depth):
        prefix = fam.alias or fam.name
        hint = "".join(f"; {name} is {g.title}-{depth} on datasets of {g.nets} networks" if g.alias is None else
                       f"; {g.name}{depth} is {g.title}-{depth}"
                       for g in FAMILIES.values() if g is not fam and (g.alias or g.name) == prefix and g.accepts(depth))
        raise ArchsearchError(fam.depth_error(depth, hint))
    return fam, depth


def all_archs() -> list[str]:
    """Every family at its listed depths, by the family's own name (accepted under any nets)."""
    return [f"{f.name}{d}" for f in FAMILIES.values() for d in f.depths]


def family_base(family: str, depth: int, num_classes: int, width: float = 1.0, in_channels: int = 3,
                input_size: int = 32) -> ArchSpec:
    """The unpruned network of `family` at `depth` and width multiplier `width`."""
    fam = get_family(family)
    if not fam.accepts(depth):
        raise ArchsearchError(fam.depth_error(depth))
    if not (0 < width <= 16):
        raise ArchsearchError(f"width multiplier must be in (0, 16], got {width}")
    return fam.base(depth, num_classes, width, in_channels, input_size)


def base_spec(arch: str, num_classes: int, width: float = 1.0, in_channels: int = 3,
              input_size: int = 32, nets: str = "cifar") -> ArchSpec:
    """The unpruned network `arch` (e.g. 'vgg16', 'preresnet164', 'inresnet50'; names read as
    `parse_arch` reads them under `nets`) at width multiplier `width`."""
    fam, depth = parse_arch(arch, nets)
    return family_base(fam.name, depth, num_classes, width, in_channels, input_size)


def build(spec: ArchSpec) -> nn.Module:
    """The one builder: every network archsearch trains comes from here."""
    fam = get_family(spec.family)
    fam.check(spec)
    model = fam.module(spec)
    if spec.masks is not None:
        for name, mask in spec.masks.items():
            conv = model.get_submodule(name)
            conv.register_buffer("weight_mask", torch.from_numpy(np.ascontiguousarray(mask)).to(conv.weight.dtype))
        apply_masks_(model)
    return model


def build_with(spec: ArchSpec, state: dict[str, torch.Tensor] | None) -> nn.Module:
    """`build(spec)` with `state` (a state dict from a file or another run) loaded and its
    masks applied; weights that do not fit the spec are one line, not a traceback."""
    model = build(spec)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ArchsearchError(f"the weights do not fit {spec.name}: {clip(e, 200)}") from None
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


# torchvision's models (`tv.resnet18`) are families made on first use, and archs/tv.py is
# imported only then (families.PREFIXES says why)
register_prefix("tv.", "archsearch.archs.tv:tv_family")

__all__ = ["FAMILIES", "GROUP_KINDS", "NETS", "Block", "Conv", "Family", "Group", "Op", "Select", "all_archs",
           "apply_masks_", "arch_names", "base_spec", "build", "build_with", "family_base", "final_hw", "get_family",
           "he_init_", "masked_weights", "parse_arch", "register_family", "register_prefix", "scale_width",
           "scale_widths", "spread"]
