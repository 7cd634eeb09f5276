"""Your own network: any torchvision classification model as a family, `tv.NAME`
(`tv.resnet18`, `tv.mobilenet_v2`, `tv.efficientnet_b0`, ...; targets `tv.resnet18-c10`,
proposers `slimming-tv.resnet18-digits`).

Channel groups come from Torch-Pruning's `DependencyGraph` (VainF/Torch-Pruning, the
`torch-pruning` package), which traces the model once and knows which channels are coupled:
a conv's outputs with its BN, the convs that read them, the depthwise convs that must keep
them, every conv whose outputs meet in a residual add, and the classifier's inputs. Each
group of the graph whose root is a conv is one archsearch channel group, named by the conv
that makes its channels (the first to run that is not depthwise: Li et al.'s L1 norm ranks
its filters); the final classifier's outputs (the classes) are never a group. A group's stage is
the feature-map size of its convs' outputs (0 at the input resolution, +1 per halving; the
convs of a squeeze-and-excitation block take the stage of the map they rescale), found by
one traced forward pass at the dataset's resolution.

Building a spec constructs the torchvision model (`torchvision.models.get_model(NAME,
weights=None, num_classes=...)`), keeps the first `width` channels of each group through
the same graph, and initialises the convs again at their new sizes as torchvision does
(Kaiming normal, fan-out; BN scale 1, shift 0): archsearch trains from scratch. Counting
reads the layers the counters see (conv, linear and BN parameters; MACs with depthwise convs
counted per group; activations and pools for the `original` convention) from a per-layer
table traced once per (model, input size) with the groups (archs/tv_table.py: every size is
affine in the widths), so the budget solver's many counts build no module; `traced_layers`,
the same layers traced on the built, narrowed module, is what the table is tested against.

GoogLeNet's auxiliary classifiers are left out (`aux_logits=False`): they are an extra training
loss of the original paper (Szegedy et al. 2015 §5) that archsearch's one-loss trainer does not
use, and the graph, traced in eval mode, never sees them (narrowing left them at full width).
A model whose classifier is a conv (SqueezeNet's final 1x1 conv, Iandola et al. 2016) keeps
that conv's outputs, the classes, fixed like a linear classifier's.

Limits, each one clear error or stated here: a group that holds a grouped (not depthwise)
conv (ResNeXt, RegNet's group convs) keeps its width (Torch-Pruning would prune it in whole
groups; archsearch does not yet); whole architectures in `REFUSED` are refused by name, before
anything is built, with the reason (transformers' LayerNorm and attention, ConvNeXt's LayerNorm,
Inception-v3's non-square kernels, ShuffleNet's channel shuffle); any other model with layers
other than conv, BN, linear, pooling, activations and dropout, or with non-square kernels, is
refused when first traced; a model too big for its input (AlexNet at 32x32) says so and names a
side it runs on; and inputs must have 3 channels. Tested: every classification model of the
installed torchvision (tests/test_tv.py), each supported or refused in one line.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch_pruning as tp
import torchvision
from torch import nn
from torchvision.ops.misc import SqueezeExcitation

from ..errors import ArchsearchError, clip
from ..spec import ArchSpec
from . import tv_table
from .base import Conv, Family, Group, Op, scale_width

PREFIX = "tv."
# Architectures archsearch cannot narrow or count correctly, by the torchvision module that
# builds them (every model of the module shares the reason), refused before anything is built.
_SQUARE = "archsearch's specs, counters and kernel masks describe k x k kernels only"
_TRANSFORMER = ("LayerNorm and multi-head attention, whose embedding width couples every block's "
                "heads, projections and norms; archsearch counts and narrows conv, BN and linear layers only")
REFUSED = {
    "vision_transformer": f"a vision transformer: {_TRANSFORMER}",
    "swin_transformer": f"a Swin transformer: {_TRANSFORMER}",
    "maxvit": f"MaxViT mixes convs with attention blocks: {_TRANSFORMER}",
    "convnext": "ConvNeXt's blocks hold LayerNorm and a per-channel layer scale, which archsearch cannot "
                "count or narrow yet",
    "inception": f"Inception-v3's factorised convs have non-square kernels (1x7, 7x1, 1x3, 3x1); {_SQUARE}",
    "shufflenetv2": "ShuffleNet V2's channel shuffle (a view-transpose-reshape) interleaves its two branches' "
                    "channels, which Torch-Pruning's dependency graph cannot follow (it divides by zero)",
}
# keyword arguments of torchvision's builders that make the model archsearch trains (above)
_BUILD_ARGS = {"googlenet": {"aux_logits": False, "init_weights": True}}
_ACTS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.GELU)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_FREE = (nn.Dropout, nn.Identity, nn.Flatten)  # layers with no parameters and no counted work


def _graph(model: nn.Module, size: int, name: str = "the model"):
    """Torch-Pruning's dependency graph of `model` (traced through autograd: on even where the
    caller runs under `torch.no_grad()`)."""
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 3, size, size))
    except (ArithmeticError, LookupError, ValueError, TypeError, AssertionError) as e:
        # a construct the graph cannot follow (as ShuffleNet's shuffle was before REFUSED named it):
        # a limit of the model, not of the user's input; the known ones are refused by name first
        raise ArchsearchError(f"{name}: Torch-Pruning's dependency graph cannot trace this model "
                              f"({type(e).__name__}: {clip(e, 160)}); archsearch cannot narrow it") from None


@functools.lru_cache(maxsize=None)
def _classification_models() -> tuple[str, ...]:
    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def classification_models() -> list[str]:
    return list(_classification_models())


def _module_of(model: str) -> str:
    """The torchvision module that builds `model` ('resnet' for resnet18)."""
    return torchvision.models.get_model_builder(model).__module__.rpartition(".")[2]


def refusal(model: str) -> str | None:
    """Why archsearch refuses torchvision's `model` (REFUSED), or None; no model is built."""
    return REFUSED.get(_module_of(model)) if model in _classification_models() else None


def _check_known(model: str) -> None:
    """The one error for a name that is not a classification model, or one archsearch refuses."""
    if model not in _classification_models():
        supported = [n for n in _classification_models() if refusal(n) is None]
        raise ArchsearchError(f"unknown torchvision model {model!r}; archsearch supports {len(supported)} of "
                              f"torchvision's classification models: {', '.join(supported[:8])}, ...")
    why = refusal(model)
    if why:
        raise ArchsearchError(f"{PREFIX}{model} is not supported: {why}")


def make_model(model: str, num_classes: int) -> nn.Module:
    """torchvision's `model` as archsearch builds it (no weights, no auxiliary classifiers)."""
    _check_known(model)
    try:
        return torchvision.models.get_model(model, weights=None, num_classes=num_classes,
                                            **_BUILD_ARGS.get(_module_of(model), {}))
    except (TypeError, ValueError) as e:
        raise ArchsearchError(f"torchvision cannot build {model} with {num_classes} classes: {e}") from None


def _classifier(model: nn.Module) -> str:
    """The layer that makes the classes: the last linear layer, or, in a model without one, the
    last conv (SqueezeNet's final 1x1 conv)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not linears and not convs:
        raise ArchsearchError("the model has no final linear or conv layer (its classifier)")
    return (linears or convs)[-1]


@functools.lru_cache(maxsize=None)
def _check_classes(model: str, num_classes: int) -> None:
    """torchvision builds `model` with `num_classes` outputs, or one line says why; checked once
    per pair (a build of ResNet-50 takes half a second, and specs are made often)."""
    make_model(model, num_classes)


@dataclass(frozen=True)
class _Layer:
    """One counted layer of the built module, in execution order."""

    name: str
    op: Op
    conv: Conv | None = None


def _smallest_side(model_name: str, limit: int = 1024) -> int | None:
    """The smallest square input torchvision's `model_name` runs on (up to `limit`; None if
    none), by bisection over shapes only: run on the meta device, no weights. (Built on the CPU
    first: RegNet's builder computes its widths with tensor ops, which the meta device cannot.)"""
    model = make_model(model_name, 10).eval().to("meta")

    def runs(side: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, side, side, device="meta"))
            return True
        except RuntimeError:
            return False

    if not runs(limit):
        return None
    lo, hi = 1, limit  # runs(hi) always holds: the answer is a side it runs on
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if runs(mid) else (mid + 1, hi)
    return hi


def _check_countable(model: nn.Module, name: str) -> None:
    """Refuse, by name, a model with layers the counters cannot count or narrow."""
    unknown = sorted({type(m).__name__ for m in model.modules() if not list(m.children())
                      and not isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear) + _ACTS + _POOLS + _FREE)
                      and any(True for _ in m.parameters(recurse=False))})
    if unknown:
        raise ArchsearchError(f"{name} holds layers archsearch cannot count or narrow yet: {', '.join(unknown)}")
    oblong = sorted({"x".join(map(str, m.kernel_size)) for m in model.modules()
                     if isinstance(m, nn.Conv2d) and m.kernel_size[0] != m.kernel_size[1]})
    if oblong:
        raise ArchsearchError(f"{name} has convs with non-square kernels ({', '.join(oblong)}); {_SQUARE}")


def _layer(name: str, m: nn.Module, x: torch.Tensor, out: torch.Tensor,
           stage_of: Callable[[int], int]) -> _Layer | None:
    """The counted layer that leaf module `m` is, seen in a forward (None: a layer of no work)."""
    if isinstance(m, nn.Conv2d):
        hw = out.shape[-1]
        cin = m.in_channels // m.groups
        op = Op("conv", cin, m.out_channels, hw, m.kernel_size[0], bias=m.bias is not None,
                depthwise=m.groups > 1 and m.groups == m.in_channels == m.out_channels)
        return _Layer(name, op, Conv(name, m.out_channels, cin, m.kernel_size[0], stage_of(hw), hw))
    if isinstance(m, nn.BatchNorm2d):
        return _Layer(name, Op("bn", m.num_features, m.num_features, out.shape[-1]))
    if isinstance(m, nn.Linear):
        return _Layer(name, Op("linear", m.in_features, m.out_features, 1))
    if isinstance(m, _ACTS):
        n = out[0].numel()
        return _Layer(name, Op("relu", n, n, 1))
    if isinstance(m, _POOLS):
        k = max(1, x.shape[-1] // max(1, out.shape[-1]))
        return _Layer(name, Op("maxpool" if "Max" in type(m).__name__ else "avgpool",
                               out.shape[1], out.shape[1], out.shape[-1], k))
    return None


def _forward_once(model: nn.Module, size: int, model_name: str) -> None:
    """One eval-mode forward at `size`, or one line saying which input side the model needs."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except RuntimeError as e:
        side = _smallest_side(model_name)
        needs = f" (it runs on {side}x{side}: use a dataset of larger images)" if side else ""
        raise ArchsearchError(f"{PREFIX}{model_name} does not run on {size}x{size} images{needs}: "
                              f"{clip(e, 160)}") from None
    finally:
        model.train(was)


def _trace(model: nn.Module, size: int, model_name: str) -> tuple[list[_Layer], dict[str, int]]:
    """The layers of `model` (torchvision's `model_name`) as the counters see them (one forward
    at `size`), and each conv's stage: a conv inside a squeeze-excitation block takes the
    stage of the block's input."""
    _check_countable(model, PREFIX + model_name)
    layers: list[_Layer] = []
    se_stage: dict[str, int] = {}
    names = {m: n for n, m in model.named_modules()}

    def stage_of(hw: int) -> int:
        return max(0, int(round(math.log2(size / max(1, hw)))))

    def hook(m, inp, out):
        if isinstance(m, SqueezeExcitation):
            se_stage[names[m]] = stage_of(inp[0].shape[-1])
        elif (layer := _layer(names[m], m, inp[0], out, stage_of)) is not None:
            layers.append(layer)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not list(m.children()) or isinstance(m, SqueezeExcitation)]
    try:
        _forward_once(model, size, model_name)
    finally:
        for h in handles:
            h.remove()
    stages = {}
    for layer in layers:
        if layer.conv is not None:
            owner = next((se for se in se_stage if layer.name.startswith(se + ".")), None)
            stages[layer.name] = se_stage[owner] if owner else layer.conv.stage
    return layers, stages


@dataclass(frozen=True)
class _Layout:
    groups: tuple[Group, ...]                       # at full width
    wires: dict[str, tuple[str | None, str | None]]  # module -> (group of its output dim, of its input dim)
    bns: dict[str, tuple[str, ...]]                  # group -> every BN of its coupled channels
    conv_stages: dict[str, int]                      # conv -> its stage, numbered as the groups'
    table: tv_table.Table | None                     # the layers at any widths (None: count by building)


@contextlib.contextmanager
def _one_thread():
    """Torch on one thread for a while: the traces below run single images of a few pixels, where a
    second thread only adds waits (two threads on a busy 2-core machine: 27 ms per conv of
    MobileNetV2 at 32x32, against under 1 ms on one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@functools.lru_cache(maxsize=64)
def _layout(model_name: str, size: int) -> _Layout:
    """The groups, wires, BNs, stages and count table of torchvision's `model_name` at `size`,
    traced once per process."""
    with _one_thread():
        return _trace_layout(model_name, size)


def _trace_layout(model_name: str, size: int) -> _Layout:
    model = make_model(model_name, tv_table.BASE_CLASSES)  # the classes never form a group
    layers, stages = _trace(model, size, model_name)
    run_order = {layer.name: i for i, layer in enumerate(layers)}
    clf = model.get_submodule(_classifier(model))
    dg = _graph(model, size, PREFIX + model_name)
    names = {m: n for n, m in model.named_modules()}
    groups, wires, bns = [], {}, {}
    seen_roots = set()
    for g in dg.get_all_groups(ignored_layers=[clf], root_module_types=[nn.Conv2d]):
        items = [(it.dep.target.module, it.dep.handler) for it in g]
        root = items[0][0]
        if root not in names:
            continue
        convs = [m for m, _ in items if isinstance(m, nn.Conv2d)]
        if any(1 < c.groups < c.in_channels for c in convs):  # grouped, not depthwise: width fixed (module docstring)
            continue
        outs = [names[m] for m, h in items if m in names and dg.is_out_channel_pruning_fn(h)]
        # the group is named by the conv that makes its channels: the first one to run that reads
        # all its inputs (not a depthwise conv, which only carries them); Li et al.'s L1 ranks its filters
        makers = sorted((n for n in outs if isinstance(model.get_submodule(n), nn.Conv2d)
                         and model.get_submodule(n).groups == 1), key=lambda n: run_order.get(n, len(run_order)))
        gname = makers[0] if makers else names[root]
        if gname in seen_roots:
            continue
        seen_roots.add(gname)
        ins = [names[m] for m, h in items if m in names and dg.is_in_channel_pruning_fn(h)]
        conv_stages = [stages[n] for n in outs if n in stages]
        stage = max(set(conv_stages), key=lambda s: (conv_stages.count(s), s)) if conv_stages else 0
        group_bns = tuple(n for n in outs if isinstance(model.get_submodule(n), nn.BatchNorm2d))
        bn = group_bns[0] if group_bns else ""
        bns[gname] = group_bns
        groups.append(Group(name=gname, kind="conv", stage=stage, base=model.get_submodule(gname).out_channels, bn=bn))
        for n in outs:
            wires.setdefault(n, [None, None])[0] = gname
        for n in ins:
            m = model.get_submodule(n)
            if isinstance(m, nn.Conv2d) and m.groups > 1:
                continue  # a depthwise conv's weight has one input per output: its outputs carry the group
            wires.setdefault(n, [None, None])[1] = gname
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    # stages count from the first group's map (a spec's stages start at 0; a stem conv before it
    # joins stage 0) and are numbered densely (a stride-4 layer would otherwise skip one)
    low = min((g.stage for g in groups), default=0)
    dense = {v: i for i, v in enumerate(sorted({max(0, v - low) for v in [*stages.values(), *(g.stage for g in groups)]}))}
    at = {n: dense[max(0, v - low)] for n, v in stages.items()}
    groups = sorted((Group(g.name, g.kind, dense[max(0, g.stage - low)], g.base, g.bn) for g in groups),
                    key=lambda g: (g.stage, order[g.name]))
    table = tv_table.table(model, dg, [(g.name, g.base) for g in groups], _classifier(model), size,
                           lambda n, m, x, out: getattr(_layer(n, m, x, out, lambda hw: 0), "op", None))
    return _Layout(tuple(groups), {k: (v[0], v[1]) for k, v in wires.items()}, bns, at, table)


def _reinit_(model: nn.Module) -> None:
    """torchvision's initialisation of its CNNs, at the narrowed sizes. The classifier keeps its
    sliced weights: torchvision draws a conv classifier (SqueezeNet's) at a fixed std, not Kaiming's."""
    clf = model.get_submodule(_classifier(model))
    for m in model.modules():
        if m is clf:
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _check_widths(name: str, gs: tuple[Group, ...], widths: tuple[int, ...]) -> None:
    if len(widths) != len(gs):
        raise ArchsearchError(f"{name} has {len(gs)} channel groups; spec has {len(widths)} widths")
    for g, w in zip(gs, widths):
        if not 1 <= w <= g.base:
            raise ArchsearchError(f"{name}: group {g.name} has {g.base} channels; width {w} is out of range")


@functools.lru_cache(maxsize=256)
def _layers(model_name: str, size: int, num_classes: int, widths: tuple[int, ...]) -> tuple[_Layer, ...]:
    """The counted layers at `widths`: from the model's table (archs/tv_table.py), or, for a model
    without one, traced on the built, narrowed module (`traced_layers`)."""
    lay = _layout(model_name, size)
    if lay.table is None:
        return traced_layers(model_name, size, num_classes, widths)
    _check_widths(PREFIX + model_name, lay.groups, widths)
    # stage 0 here: `convs` takes each conv's stage from the layout
    return tuple(_Layer(n, op, Conv(n, op.cout, op.cin, op.k, 0, op.hw) if op.kind == "conv" else None)
                 for n, op in lay.table.ops(widths, num_classes))


def traced_layers(model_name: str, size: int, num_classes: int, widths: tuple[int, ...]) -> tuple[_Layer, ...]:
    """The counted layers of the built module narrowed to `widths`, traced: what the table must
    equal (tests/test_fast_count.py), and the count of a model without a table."""
    model = TorchvisionFamily(model_name)._narrowed(size, num_classes, widths)
    return tuple(_trace(model, size, model_name)[0])


class TorchvisionFamily(Family):
    """One torchvision model, `tv.NAME` (the module docstring). Depth is always 0: the name
    says the network."""

    depths = (0,)
    alias = None
    nets = "any"

    def __init__(self, model: str):
        self.model = model
        self.name = PREFIX + model
        self.title = f"torchvision {model}"

    def accepts(self, depth: int) -> bool:
        return depth == 0

    def depth_rule(self) -> str:
        return "0 (the name says the network)"

    def layout(self, depth: int, width: float, input_size: int = 32) -> list[Group]:
        gs = _layout(self.model, input_size).groups
        return [Group(g.name, g.kind, g.stage, scale_width(g.base, width), g.bn) for g in gs]

    def groups(self, spec: ArchSpec) -> list[Group]:
        return self.layout(spec.depth, spec.width, spec.input_size)

    def base(self, depth: int, num_classes: int, width: float = 1.0, in_channels: int = 3,
             input_size: int = 32) -> ArchSpec:
        if in_channels != 3:
            raise ArchsearchError(f"{self.name} reads 3-channel images, not {in_channels}")
        _check_known(self.model)
        if num_classes != tv_table.BASE_CLASSES:  # at BASE_CLASSES, the layout's own build below is the check
            _check_classes(self.model, num_classes)
        gs = self.layout(depth, width, input_size)
        widths = [g.base for g in gs]
        return ArchSpec(family=self.name, depth=0, widths=widths, stages=[g.stage for g in gs],
                        num_classes=num_classes, in_channels=3, input_size=input_size, base_widths=list(widths),
                        width=width, meta={"origin": "base", "width": width})

    def conv_names(self, depth: int) -> list[str]:
        return [c.name for c in self.convs(self.base(0, 10))]

    def _narrowed(self, size: int, num_classes: int, widths: tuple[int, ...]) -> nn.Module:
        model = make_model(self.model, num_classes)
        gs = _layout(self.model, size).groups
        _check_widths(self.name, gs, widths)
        if all(w == g.base for w, g in zip(widths, gs)):
            return model
        dg = _graph(model, size, self.name)
        for g, w in zip(gs, widths):
            if w < g.base:
                root = model.get_submodule(g.name)
                dg.get_pruning_group(root, tp.prune_conv_out_channels, idxs=list(range(w, g.base))).prune()
        _reinit_(model)
        return model

    def _dense_layers(self, spec: ArchSpec) -> tuple[_Layer, ...]:
        return _layers(self.model, spec.input_size, spec.num_classes, tuple(spec.widths))

    def convs(self, spec: ArchSpec) -> list[Conv]:
        stages = _layout(self.model, spec.input_size).conv_stages
        return [Conv(c.name, c.cout, c.cin, c.k, stages[c.name], c.hw)
                for c in (layer.conv for layer in self._dense_layers(spec)) if c is not None]

    def wires(self, spec: ArchSpec) -> dict[str, tuple[str | None, str | None]]:
        return dict(_layout(self.model, spec.input_size).wires)

    def group_bns(self, spec: ArchSpec, group: Group) -> list[str]:
        return list(_layout(self.model, spec.input_size).bns[group.name])

    def ops(self, spec: ArchSpec) -> list[Op]:
        masks = spec.masks or {}
        ops = []
        for layer in self._dense_layers(spec):
            op = layer.op
            if layer.conv is not None and layer.name in masks:
                op = Op(op.kind, op.cin, op.cout, op.hw, op.k, nonzero=int(np.count_nonzero(masks[layer.name])),
                        bias=op.bias, depthwise=op.depthwise)
            ops.append(op)
        return ops

    def module(self, spec: ArchSpec) -> nn.Module:
        return self._narrowed(spec.input_size, spec.num_classes, tuple(spec.widths))


@functools.lru_cache(maxsize=None)
def tv_family(model: str) -> TorchvisionFamily:
    """The family of torchvision's `model` (checked against torchvision's list and REFUSED
    before anything is built)."""
    _check_known(model)
    return TorchvisionFamily(model)


__all__ = ["TorchvisionFamily", "tv_family", "classification_models", "make_model", "refusal", "REFUSED", "PREFIX"]
