"""The DenseNet of Network Slimming ("Rethinking", `cifar/network-slimming/models/densenet.py`).

Depth 3n+4, growth rate 12, no bottleneck, no compression: a 3x3 stem conv of 2 x growth
channels, three dense blocks of n layers (BN -> selection -> ReLU -> 3x3 conv of `growth`
channels, concatenated to the stream), with a transition between blocks (BN -> selection ->
ReLU -> 1x1 conv back to the stream's width -> 2x2 average pool), then BN -> selection ->
ReLU, an 8x8 average pool and one linear layer. BN scales start at 0.5.

Channel groups, as Network Slimming prunes them (`denseprune.py`): the channels each layer's
and each transition's selection lets through from the stream (ranked by the BN just before
it), and the final selection. Conv outputs (the growth) and the stream keep their width.

The original's default cfg adds 12 x 12 channels per block whatever the depth, which is the
stream's width only at depth 40; here the stream widths are computed, so every 3n+4 depth
builds (at depth 40 they are the original's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..families import register_family
from ..spec import ArchSpec
from .base import Conv, Family, Group, Op, Select, final_hw, he_init_, scale_width

GROWTH = 12


def _n(depth: int) -> int:
    return (depth - 4) // 3


class DenseLayer(nn.Module):
    def __init__(self, cin: int, sel: list[int], growth: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.select = Select(cin, sel)
        self.conv1 = nn.Conv2d(len(sel), growth, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return torch.cat((x, self.conv1(self.relu(self.select(self.bn1(x))))), 1)


class Transition(nn.Module):
    def __init__(self, cin: int, sel: list[int]):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.select = Select(cin, sel)
        self.conv1 = nn.Conv2d(len(sel), cin, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return F.avg_pool2d(self.conv1(self.relu(self.select(self.bn1(x)))), 2)


class DenseNet(nn.Module):
    def __init__(self, spec: ArchSpec, fam: "DenseNetFamily"):
        super().__init__()
        growth, n = fam.growth(spec.width), _n(spec.depth)
        sel = {g.name: fam.selection(spec, g, w) for g, w in zip(fam.groups(spec), spec.widths)}
        cin = 2 * growth
        self.conv1 = nn.Conv2d(spec.in_channels, cin, 3, padding=1, bias=False)
        for s in range(3):
            layers = []
            for i in range(n):
                layers.append(DenseLayer(cin, sel[f"dense{s + 1}.{i}.select"], growth))
                cin += growth
            setattr(self, f"dense{s + 1}", nn.Sequential(*layers))
            if s < 2:
                setattr(self, f"trans{s + 1}", Transition(cin, sel[f"trans{s + 1}.select"]))
        self.bn = nn.BatchNorm2d(cin)
        self.select = Select(cin, sel["select"])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(final_hw(spec, 2))
        self.fc = nn.Linear(len(sel["select"]), spec.num_classes)
        he_init_(self, bn_gamma=0.5)

    def forward(self, x):
        x = self.conv1(x)
        x = self.trans1(self.dense1(x))
        x = self.trans2(self.dense2(x))
        x = self.relu(self.select(self.bn(self.dense3(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_family
class DenseNetFamily(Family):
    name = "densenet"
    title = "the CIFAR DenseNet"
    depths = (40, 100)
    depth_step, depth_offset, min_depth, max_depth = 3, 4, 7, 1000

    def growth(self, width: float) -> int:
        return scale_width(GROWTH, width)

    def layout(self, depth: int, width: float) -> list[Group]:
        g, n, out = self.growth(width), _n(depth), []
        cin = 2 * g
        for s in range(3):
            for i in range(n):
                name = f"dense{s + 1}.{i}.select"
                out.append(Group(name, "select", s, cin, bn=f"dense{s + 1}.{i}.bn1", stream=cin))
                cin += g
            if s < 2:
                out.append(Group(f"trans{s + 1}.select", "select", s, cin, bn=f"trans{s + 1}.bn1", stream=cin))
        out.append(Group("select", "select", 2, cin, bn="bn", stream=cin))
        return out

    def convs(self, spec: ArchSpec) -> list[Conv]:
        g = self.growth(spec.width)
        out = [Conv("conv1", 2 * g, spec.in_channels, 3, 0, spec.input_size)]
        for grp, w in zip(self.groups(spec), spec.widths):
            module, hw = grp.name.rsplit(".", 1)[0], spec.input_size >> grp.stage
            if module.startswith("dense"):
                out.append(Conv(f"{module}.conv1", g, w, 3, grp.stage, hw))
            elif module.startswith("trans"):
                out.append(Conv(f"{module}.conv1", grp.stream, w, 1, grp.stage, hw))
        return out

    def wires(self, spec: ArchSpec) -> dict[str, tuple[str | None, str | None]]:
        w: dict[str, tuple[str | None, str | None]] = {}
        for grp in self.groups(spec):
            module = grp.name.rsplit(".", 1)[0] if "." in grp.name else ""
            w[f"{module}.conv1" if module else "fc"] = (None, grp.name)
        return w

    def ops(self, spec: ArchSpec) -> list[Op]:
        nz = {c: int(m.sum()) for c, m in spec.masks.items()} if spec.masks is not None else {}
        g = self.growth(spec.width)
        ops = [Op("conv", spec.in_channels, 2 * g, spec.input_size, k=3, nonzero=nz.get("conv1"))]
        for grp, w in zip(self.groups(spec), spec.widths):
            hw, cin = spec.input_size >> grp.stage, grp.stream
            # BN on the whole stream, the selection (free), ReLU on what it let through
            ops += [Op("bn", cin, cin, hw), Op("relu", w, w, hw)]
            if grp.name == "select":
                k = final_hw(spec, 2)
                ops += [Op("avgpool", w, w, hw // k, k=k), Op("linear", w, spec.num_classes, 1)]
                continue
            module = grp.name.rsplit(".", 1)[0]
            cout, k = (g, 3) if module.startswith("dense") else (cin, 1)
            # the transition's 2x2 pool is functional: the original FLOP counter does not see it
            ops.append(Op("conv", w, cout, hw, k=k, nonzero=nz.get(f"{module}.conv1")))
        return ops

    def module(self, spec: ArchSpec) -> nn.Module:
        return DenseNet(spec, self)
