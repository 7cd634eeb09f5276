"""The pieces every family is made of: layers as the counters see them (`Op`), channel
groups (`Group`), convs, blocks, Network Slimming's channel selection, and the `Family` base
class with what every family shares (layout checks, narrowing a trained net). The package
docstring (`archsearch.archs`) describes how they fit together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ArchsearchError
from ..spec import ArchSpec

GROUP_KINDS = ("conv", "select")
NETS = ("cifar", "imagenet")  # which networks a dataset's arch names mean (`DatasetInfo.nets`)


@dataclass(frozen=True)
class Op:
    """One layer as the counters see it. `hw` is the output side length; `nonzero` the
    number of kept weights of a masked conv (None = dense); `bias` whether a conv has one (the
    ImageNet VGGs' convs do). `in_original` is False for a layer that the paper's FLOP counter
    never sees: it hooks registered Conv2d, Linear, BatchNorm2d, ReLU and pooling modules, so a
    layer built inside `forward` (the CIFAR VGG's final average pool) or a BatchNorm1d (the
    ImageNet VGG-11's classifier) is not counted there."""

    kind: str  # conv | bn | relu | maxpool | avgpool | linear
    cin: int
    cout: int
    hw: int
    k: int = 1
    nonzero: int | None = None
    in_original: bool = True
    bias: bool = False
    depthwise: bool = False  # a conv of one input channel per output (groups = channels): `cin` is 1


@dataclass(frozen=True)
class Group:
    """Channels that keep one width. `base` is its width in the unpruned net at the spec's
    width multiplier; for a `select` group, `stream` is the width of the stream it reads
    (at most `stream` channels can be selected; the base net selects all of them)."""

    name: str       # the conv (kind conv) or the selection layer (kind select), by module name
    kind: str
    stage: int      # feature-map size index: 0 at the input resolution, +1 per halving
    base: int
    bn: str         # the BN whose scale ranks the group's channels
    stream: int | None = None
    block: int | None = None  # index into the family's blocks, where the group sits in one


@dataclass(frozen=True)
class Conv:
    name: str
    cout: int
    cin: int
    k: int
    stage: int      # the stage of its output
    hw: int         # output side length

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.cout, self.cin, self.k, self.k)


@dataclass(frozen=True)
class Block:
    name: str
    removable: bool  # an identity can replace it (same input and output shape)
    branch: str = ""  # the module whose output is the residual branch's output (before the add)
    stage: int = 0


class Select(nn.Module):
    """Network Slimming's channel selection: pass on only the channels in `indexes` (a
    buffer, not a parameter: it is architecture, not something trained)."""

    def __init__(self, stream: int, indexes: list[int]):
        super().__init__()
        self.stream = stream
        self.full = list(indexes) == list(range(stream))
        self.register_buffer("indexes", torch.tensor(indexes, dtype=torch.long))

    def forward(self, x):
        return x if self.full else x.index_select(1, self.indexes)

    def extra_repr(self) -> str:
        return f"{len(self.indexes)} of {self.stream}"


def spread(stream: int, width: int) -> list[int]:
    """The default selection: `width` channels spread evenly over a stream of `stream`."""
    return [int(i) for i in np.floor(np.arange(width) * stream / width)]


class Family:
    name: ClassVar[str]
    depths: ClassVar[tuple[int, ...]]   # the depths listed by name (`all_archs`)
    title: ClassVar[str] = ""           # for messages: "the CIFAR ResNet", "torchvision's ResNet"
    nets: ClassVar[str] = "cifar"       # the networks it belongs to (`NETS`)
    alias: ClassVar[str | None] = None  # the prefix it is typed as where a dataset's nets are `nets`
    # a family of any depth step*n + offset (min_depth..max_depth); without a step, `depths` only
    depth_step: ClassVar[int | None] = None
    depth_offset: ClassVar[int] = 0
    min_depth: ClassVar[int] = 1
    max_depth: ClassVar[int] = 1000

    # -- layout (depth and width multiplier only) -----------------------------------------
    def accepts(self, depth: int) -> bool:
        if self.depth_step is None:
            return depth in self.depths
        return self.min_depth <= depth <= self.max_depth and (depth - self.depth_offset) % self.depth_step == 0

    def depth_rule(self) -> str:
        listed = ", ".join(map(str, self.depths))
        if self.depth_step is None:
            return listed
        return f"{self.depth_step}n+{self.depth_offset} from {self.min_depth} to {self.max_depth} ({listed}, ...)"

    def depth_error(self, depth: int, hint: str = "") -> str:
        """Why `depth` is refused: a depth of the family's form beyond its bounds names the bound
        it breaks (the rule alone would seem to allow it)."""
        why = ""
        if self.depth_step is not None and (depth - self.depth_offset) % self.depth_step == 0:
            if depth > self.max_depth:
                why = f": the deepest is {self.max_depth}"
            elif depth < self.min_depth:
                why = f": the shallowest is {self.min_depth}"
        return f"{self.name} has depths {self.depth_rule()}, not {depth}{why}{hint}"

    def layout(self, depth: int, width: float) -> list[Group]:
        raise NotImplementedError

    def block_layout(self, depth: int) -> list[Block]:
        return []

    def groups(self, spec: ArchSpec) -> list[Group]:
        return self.layout(spec.depth, spec.width)

    def conv_names(self, depth: int) -> list[str]:
        base = self.base(depth, 10, 1.0)
        return [c.name for c in self.convs(base)]

    def base(self, depth: int, num_classes: int, width: float = 1.0, in_channels: int = 3,
             input_size: int = 32) -> ArchSpec:
        gs = self.layout(depth, width)
        widths = [g.base for g in gs]
        return ArchSpec(family=self.name, depth=depth, widths=widths, stages=[g.stage for g in gs],
                        num_classes=num_classes, in_channels=in_channels, input_size=input_size,
                        base_widths=list(widths), width=width, meta={"origin": "base", "width": width})

    # -- from a spec -----------------------------------------------------------------------
    def convs(self, spec: ArchSpec) -> list[Conv]:
        raise NotImplementedError

    def wires(self, spec: ArchSpec) -> dict[str, tuple[str | None, str | None]]:
        """module name -> (group of its output dim, group of its input dim); None = fixed."""
        raise NotImplementedError

    def ops(self, spec: ArchSpec) -> list[Op]:
        raise NotImplementedError

    def module(self, spec: ArchSpec) -> nn.Module:
        raise NotImplementedError

    def group_bns(self, spec: ArchSpec, group: Group) -> list[str]:
        """The BatchNorms whose scales rank a group's channels (Network Slimming): its own BN
        here; every BN of a coupled group in a `tv.*` family, whose scores average over them."""
        return [group.bn]

    def selection(self, spec: ArchSpec, group: Group, width: int | None = None) -> list[int]:
        """The stream channels a select group reads: the spec's own, or spread evenly."""
        if spec.selected and group.name in spec.selected:
            return list(spec.selected[group.name])
        return spread(group.stream, width or spec.widths[self._index(spec)[group.name]])

    def _index(self, spec: ArchSpec) -> dict[str, int]:
        return {g.name: i for i, g in enumerate(self.groups(spec))}

    def kept_blocks(self, spec: ArchSpec) -> list[bool]:
        n = len(self.block_layout(spec.depth))
        return list(spec.blocks) if spec.blocks is not None else [True] * n

    def check(self, spec: ArchSpec) -> None:
        """The spec fits this family: depth, group layout, select widths and indices, masks, blocks."""
        if not self.accepts(spec.depth):
            raise ArchsearchError(self.depth_error(spec.depth))
        gs = self.groups(spec)
        stages = [g.stage for g in gs]
        if spec.stages != stages:
            raise ArchsearchError(f"{spec.name} has {len(gs)} channel groups with stages {stages}; "
                                  f"spec has {len(spec.stages)} with stages {spec.stages}")
        for g, w in zip(gs, spec.widths):
            if g.kind == "select" and w > g.stream:
                raise ArchsearchError(f"{g.name} selects {w} channels from a stream of {g.stream}")
        known = {g.name: g for g in gs if g.kind == "select"}
        for name, idx in (spec.selected or {}).items():
            g = known.get(name)
            if g is None:
                raise ArchsearchError(f"selected names {name!r}, which is no selection group of {spec.name}")
            w = spec.widths[self._index(spec)[name]]
            if len(idx) != w or len(set(idx)) != len(idx) or min(idx) < 0 or max(idx) >= g.stream:
                raise ArchsearchError(f"selected[{name}] must list {w} distinct channels below {g.stream}")
        blocks = self.block_layout(spec.depth)
        if spec.blocks is not None:
            if len(spec.blocks) != len(blocks):
                raise ArchsearchError(f"{spec.name} has {len(blocks)} blocks; spec has {len(spec.blocks)} keep flags")
            fixed = [b.name for b, keep in zip(blocks, spec.blocks) if not keep and not b.removable]
            if fixed:
                raise ArchsearchError(f"block(s) {', '.join(fixed)} change the shape and cannot be removed")
        if spec.masks is not None:
            convs = {c.name: c for c in self.convs(spec)}
            unknown = sorted(set(spec.masks) - set(convs))
            if unknown:
                raise ArchsearchError(f"masks name {', '.join(unknown[:3])}, not conv(s) of {spec.name}")
            missing = [n for n in convs if n not in spec.masks]
            if missing:
                raise ArchsearchError(f"masks are missing for conv(s) {', '.join(missing[:3])}")
            for n, m in spec.masks.items():
                if tuple(m.shape) != convs[n].shape:
                    raise ArchsearchError(f"mask {n} has shape {list(m.shape)}, the conv has {list(convs[n].shape)}")

    # -- inherited weights ------------------------------------------------------------------
    def narrow(self, model: nn.Module, spec: ArchSpec, keep: list[np.ndarray]) -> tuple[ArchSpec, dict]:
        """The narrower net that keeps, in channel group i, the channels where `keep[i]` is
        True: its spec and its state dict sliced from `model` (built from `spec`). For the
        fine-tune baseline; the same function as `model` with the dropped channels' BN scale
        and shift at zero."""
        gs = self.groups(spec)
        if len(keep) != len(gs) or any(len(k) != w for k, w in zip(keep, spec.widths)):
            raise ValueError(f"keep masks do not match {spec.name}'s {len(gs)} channel groups")
        if any(not np.any(k) for k in keep):
            raise ValueError("every channel group must keep at least one channel")
        idx = {g.name: torch.from_numpy(np.flatnonzero(k)) for g, k in zip(gs, keep)}
        width = {g.name: w for g, w in zip(gs, spec.widths)}
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for mod, (out_g, in_g) in self.wires(spec).items():
            for p in ("weight", "weight_mask", "bias", "running_mean", "running_var"):
                key = f"{mod}.{p}"
                if key not in state:
                    continue
                t = state[key]
                if out_g is not None:
                    t = t.index_select(0, idx[out_g])
                if in_g is not None and t.dim() > 1:
                    i = idx[in_g]
                    per = t.shape[1] // width[in_g]
                    if per > 1:  # a linear layer reading a flattened C x H x W map: H*W inputs per channel
                        i = (i[:, None] * per + torch.arange(per)).flatten()
                    t = t.index_select(1, i)
                state[key] = t.contiguous()
        selected = {}
        for g, k in zip(gs, keep):
            if g.kind == "select":
                cur = self.selection(spec, g)
                selected[g.name] = [cur[i] for i in np.flatnonzero(k)]
                state[f"{g.name}.indexes"] = torch.tensor(selected[g.name], dtype=torch.long)
        masks = None
        if spec.masks is not None:
            masks = {c.name: state[f"{c.name}.weight_mask"].bool().numpy() for c in self.convs(spec)}
        new = spec.replace(widths=[int(np.sum(k)) for k in keep], selected=selected or None, masks=masks,
                           meta={})
        return new, state


def scale_width(w: int, width: float) -> int:
    """One base width at a width multiplier (reduced-scale runs); at least 1 channel."""
    return max(1, int(round(w * width)))


def scale_widths(widths: list[int], width: float) -> list[int]:
    if not (0 < width <= 16):
        raise ArchsearchError(f"width multiplier must be in (0, 16], got {width}")
    return [scale_width(w, width) for w in widths]


def he_init_(model: nn.Module, bn_gamma: float) -> None:
    """The paper's code's init: conv weights N(0, sqrt(2 / (k*k*out))), BN scale `bn_gamma`
    (0.5 in the slimming code, 1 in the L1-norm code), BN shift 0. Linear layers keep
    PyTorch's default (the original code leaves them) unless a family re-inits them."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, (2.0 / n) ** 0.5)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, bn_gamma)
            nn.init.zeros_(m.bias)


def final_hw(spec: ArchSpec, halvings: int, exact: bool = False) -> int:
    """The side of the last feature map. `exact`: for nets whose strided convs round a side up
    while their shortcuts (and counts) round it down, every halving must be exact."""
    hw = spec.input_size // 2 ** halvings
    if hw < 1:
        raise ArchsearchError(f"input size {spec.input_size} is too small for {spec.name} ({halvings} halvings)")
    if exact and spec.input_size % 2 ** halvings:
        raise ArchsearchError(f"{spec.name} needs an input size divisible by {2 ** halvings} (its stages halve it "
                              f"{halvings} times), got {spec.input_size}; register the data with such a --size")
    return hw
