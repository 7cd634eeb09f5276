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

Add a family by subclassing `Family` and decorating it with `@register_family`.

Arch names: a dataset says which networks its names mean (`DatasetInfo.nets`: "cifar", the
paper's CIFAR networks, or "imagenet", its ImageNet ones). A family of the ImageNet networks
has an `alias`, the prefix users type for it there: under "imagenet" `vgg16` is `invgg16` and
`resnet50` is `inresnet50`; under "cifar" they are the CIFAR families. A family's own name
(`spec.name`, e.g. `invgg16`) is accepted under either. `parse_arch` is the one place that
reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import ArchsearchError, clip
from ..spec import ArchSpec

FAMILIES: dict[str, "Family"] = {}
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


def register_family(cls: type[Family]) -> type[Family]:
    FAMILIES[cls.name] = cls()
    return cls


def get_family(name: str) -> Family:
    if name.startswith("tv."):  # any torchvision model, made on first use (archs/tv.py)
        from .tv import tv_family

        return tv_family(name[3:])
    try:
        return FAMILIES[name]
    except KeyError:
        raise ArchsearchError(f"unknown architecture family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


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


def scale_width(w: int, width: float) -> int:
    """One base width at a width multiplier (reduced-scale runs); at least 1 channel."""
    return max(1, int(round(w * width)))


def scale_widths(widths: list[int], width: float) -> list[int]:
    if not (0 < width <= 16):
        raise ArchsearchError(f"width multiplier must be in (0, 16], got {width}")
    return [scale_width(w, width) for w in widths]


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


from . import vgg, resnet, preresnet, densenet, imagenet  # noqa: E402,F401  (register the families)
