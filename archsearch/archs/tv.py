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
builds the module and counts its layers (conv, linear and BN parameters; MACs with
depthwise convs counted per group; activations and pools for the `original` convention),
cached per set of widths, since the spec alone does not describe an arbitrary graph.

Limits, each one clear error or stated here: a group that holds a grouped (not depthwise)
conv (ResNeXt, RegNet's group convs) keeps its width (Torch-Pruning would prune it in whole
groups; archsearch does not yet), models with layers other than conv, BN, linear, pooling,
activations and dropout (ConvNeXt's LayerNorm, ViTs) are refused, and inputs must have 3
channels. Tested: the models in `TESTED` (tests/test_tv.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ArchsearchError
from ..spec import ArchSpec
from . import Conv, Family, Group, Op, scale_width

PREFIX = "tv."
TESTED = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf")
_ACTS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.GELU)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_FREE = (nn.Dropout, nn.Identity, nn.Flatten)  # layers with no parameters and no counted work


def _tp():
    try:
        import torch_pruning as tp
    except ImportError:  # pragma: no cover - a dependency
        raise ArchsearchError("torchvision families need Torch-Pruning: pip install torch-pruning") from None
    return tp


def _graph(model: nn.Module, size: int):
    """Torch-Pruning's dependency graph of `model` (traced through autograd: on even where the
    caller runs under `torch.no_grad()`)."""
    with torch.enable_grad():
        return _tp().DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 3, size, size))


def classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _make(model: str, num_classes: int) -> nn.Module:
    import torchvision

    if model not in classification_models():
        raise ArchsearchError(f"unknown torchvision model {model!r}; classification models: "
                              f"{', '.join(classification_models()[:12])}, ... (tested: {', '.join(TESTED)})")
    try:
        return torchvision.models.get_model(model, weights=None, num_classes=num_classes)
    except (TypeError, ValueError) as e:
        raise ArchsearchError(f"torchvision cannot build {model} with {num_classes} classes: {e}") from None


def _classifier(model: nn.Module) -> str:
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ArchsearchError("the model has no final linear layer (its classifier)")
    return linears[-1]


@dataclass(frozen=True)
class _Layer:
    """One counted layer of the built module, in execution order."""

    name: str
    op: Op
    conv: Conv | None = None


def _trace(model: nn.Module, size: int) -> tuple[list[_Layer], dict[str, int]]:
    """The layers of `model` as the counters see them (one forward at `size`), and each
    conv's stage."""
    layers: list[_Layer] = []
    se_stage: dict[str, int] = {}
    out_hw: dict[str, int] = {}
    names = {m: n for n, m in model.named_modules()}
    se_types = _se_types()

    def stage_of(hw: int) -> int:
        return max(0, int(round(math.log2(size / max(1, hw)))))

    def hook(m, inp, out):
        name = names[m]
        x = inp[0]
        if isinstance(m, se_types):
            se_stage[name] = stage_of(x.shape[-1])
            return
        if isinstance(m, nn.Conv2d):
            hw = out.shape[-1]
            out_hw[name] = hw
            cin = m.in_channels // m.groups
            op = Op("conv", cin, m.out_channels, hw, m.kernel_size[0], bias=m.bias is not None)
            layers.append(_Layer(name, op, Conv(name, m.out_channels, cin, m.kernel_size[0], stage_of(hw), hw)))
        elif isinstance(m, nn.BatchNorm2d):
            layers.append(_Layer(name, Op("bn", m.num_features, m.num_features, out.shape[-1])))
        elif isinstance(m, nn.Linear):
            layers.append(_Layer(name, Op("linear", m.in_features, m.out_features, 1)))
        elif isinstance(m, _ACTS):
            n = out[0].numel()
            layers.append(_Layer(name, Op("relu", n, n, 1)))
        elif isinstance(m, _POOLS):
            k = max(1, x.shape[-1] // max(1, out.shape[-1]))
            layers.append(_Layer(name, Op("maxpool" if "Max" in type(m).__name__ else "avgpool",
                                          out.shape[1], out.shape[1], out.shape[-1], k)))

    unknown = sorted({type(m).__name__ for m in model.modules() if not list(m.children())
                      and not isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear) + _ACTS + _POOLS + _FREE)
                      and any(True for _ in m.parameters(recurse=False))})
    if unknown:
        raise ArchsearchError(f"layers archsearch cannot count or narrow yet: {', '.join(unknown)}")
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not list(m.children()) or isinstance(m, se_types)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except RuntimeError as e:
        raise ArchsearchError(f"the model does not run at {size}x{size}: {str(e).splitlines()[0][:160]}") from None
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    stages = {}
    for layer in layers:
        if layer.conv is not None:
            owner = next((se for se in se_stage if layer.name.startswith(se + ".")), None)
            stages[layer.name] = se_stage[owner] if owner else layer.conv.stage
    return layers, stages


def _se_types() -> tuple[type, ...]:
    from torchvision.ops.misc import SqueezeExcitation

    return (SqueezeExcitation,)


@dataclass(frozen=True)
class _Layout:
    groups: tuple[Group, ...]                       # at full width
    wires: dict[str, tuple[str | None, str | None]]  # module -> (group of its output dim, of its input dim)
    bns: dict[str, tuple[str, ...]]                  # group -> every BN of its coupled channels
    conv_stages: dict[str, int]                      # conv -> its stage, numbered as the groups'


@functools.lru_cache(maxsize=64)
def _layout(model_name: str, size: int) -> _Layout:
    model = _make(model_name, 10)  # the classes never form a group
    layers, stages = _trace(model, size)
    run_order = {layer.name: i for i, layer in enumerate(layers)}
    clf = model.get_submodule(_classifier(model))
    dg = _graph(model, size)
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
    return _Layout(tuple(groups), {k: (v[0], v[1]) for k, v in wires.items()}, bns, at)


def _reinit_(model: nn.Module) -> None:
    """torchvision's initialisation of its CNNs, at the narrowed sizes."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@functools.lru_cache(maxsize=256)
def _layers(model_name: str, size: int, num_classes: int, widths: tuple[int, ...]) -> tuple[_Layer, ...]:
    fam = TorchvisionFamily(model_name)
    model = fam._narrowed(size, num_classes, widths)
    return tuple(_trace(model, size)[0])


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
        _make(self.model, num_classes)  # an unknown name or class count fails here, once
        gs = self.layout(depth, width, input_size)
        widths = [g.base for g in gs]
        return ArchSpec(family=self.name, depth=0, widths=widths, stages=[g.stage for g in gs],
                        num_classes=num_classes, in_channels=3, input_size=input_size, base_widths=list(widths),
                        width=width, meta={"origin": "base", "width": width})

    def conv_names(self, depth: int) -> list[str]:
        return [c.name for c in self.convs(self.base(0, 10))]

    def _narrowed(self, size: int, num_classes: int, widths: tuple[int, ...]) -> nn.Module:
        model = _make(self.model, num_classes)
        gs = _layout(self.model, size).groups
        if len(widths) != len(gs):
            raise ArchsearchError(f"{self.name} has {len(gs)} channel groups; spec has {len(widths)} widths")
        if all(w == g.base for w, g in zip(widths, gs)):
            return model
        tp = _tp()
        dg = _graph(model, size)
        for g, w in zip(gs, widths):
            if not 1 <= w <= g.base:
                raise ArchsearchError(f"{self.name}: group {g.name} has {g.base} channels; width {w} is out of range")
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
                        bias=op.bias)
            ops.append(op)
        return ops

    def module(self, spec: ArchSpec) -> nn.Module:
        return self._narrowed(spec.input_size, spec.num_classes, tuple(spec.widths))


@functools.lru_cache(maxsize=None)
def tv_family(model: str) -> TorchvisionFamily:
    """The family of torchvision's `model` (checked against torchvision's list)."""
    if model not in classification_models():
        _make(model, 10)  # the one error message for an unknown name
    return TorchvisionFamily(model)


__all__ = ["TorchvisionFamily", "tv_family", "classification_models", "TESTED", "PREFIX"]
