"""The bottleneck pre-activation ResNet of Network Slimming ("Rethinking",
`cifar/network-slimming/models/preresnet.py`).

Depth 9n+2: a 3x3 stem conv of 16 channels, three stages of n bottleneck blocks (planes 16,
32, 64, expansion 4: streams of 64, 128, 256 channels; the first block of stages 2 and 3
strides by 2 in its 3x3 conv), then BN -> selection -> ReLU, an 8x8 average pool and one
linear layer. A block is BN -> selection -> ReLU -> 1x1 conv, BN -> ReLU -> 3x3 conv,
BN -> ReLU -> 1x1 conv back to the stream, plus the shortcut (the stream itself, or a 1x1
conv where the block changes shape: the first block of every stage). BN scales start at 0.5.

Channel groups, as Network Slimming prunes them (`resprune.py`): per block the channels its
selection lets through from the stream (ranked by the block's first BN, which stays at the
stream's width), and the outputs of its 1x1 and 3x3 convs; and the final selection before
the classifier. The stream itself keeps its width.
"""

from __future__ import annotations

from torch import nn

from ..families import register_family
from ..spec import ArchSpec
from .base import Block, Conv, Family, Group, Op, Select, final_hw, he_init_, scale_width

PLANES = (16, 32, 64)
EXPANSION = 4


def _n(depth: int) -> int:
    return (depth - 2) // 9


class Bottleneck(nn.Module):
    def __init__(self, cin: int, sel: list[int], c1: int, c2: int, out: int, stride: int, downsample: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.select = Select(cin, sel)
        self.conv1 = nn.Conv2d(len(sel), c1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, out, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride=stride, bias=False)) if downsample else None

    def forward(self, x):
        out = self.conv1(self.relu(self.select(self.bn1(x))))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + (self.downsample(x) if self.downsample is not None else x)


class PreResNet(nn.Module):
    def __init__(self, spec: ArchSpec, fam: "PreResNetFamily"):
        super().__init__()
        gs, keep = fam.groups(spec), fam.kept_blocks(spec)
        width = dict(zip((g.name for g in gs), spec.widths))
        stem = scale_width(PLANES[0], spec.width)
        self.conv1 = nn.Conv2d(spec.in_channels, stem, 3, padding=1, bias=False)
        n, cin = _n(spec.depth), stem
        for s, p in enumerate(fam.streams(spec.width)):
            blocks = []
            for b in range(n):
                name = f"layer{s + 1}.{b}"
                if not keep[s * n + b]:
                    blocks.append(nn.Identity())
                    continue
                sel = fam.selection(spec, fam.group(spec, f"{name}.select"))
                blocks.append(Bottleneck(cin, sel, width[f"{name}.conv1"], width[f"{name}.conv2"], p,
                                         stride=2 if s > 0 and b == 0 else 1, downsample=b == 0))
                cin = p
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(cin)
        self.select = Select(cin, fam.selection(spec, fam.group(spec, "select")))
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(final_hw(spec, 2, exact=True))
        self.fc = nn.Linear(len(self.select.indexes), spec.num_classes)
        he_init_(self, bn_gamma=0.5)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.relu(self.select(self.bn(x)))
        return self.fc(self.avgpool(x).flatten(1))


@register_family
class PreResNetFamily(Family):
    name = "preresnet"
    title = "the CIFAR PreResNet"
    depths = (56, 110, 164)
    depth_step, depth_offset, min_depth, max_depth = 9, 2, 11, 2000

    def streams(self, width: float) -> list[int]:
        return [EXPANSION * scale_width(p, width) for p in PLANES]

    def layout(self, depth: int, width: float) -> list[Group]:
        n, out = _n(depth), []
        cin = scale_width(PLANES[0], width)
        for s, (p, stream) in enumerate(zip(PLANES, self.streams(width))):
            mid = scale_width(p, width)
            for b in range(n):
                name, first = f"layer{s + 1}.{b}", s > 0 and b == 0
                stage_in = s - 1 if first else s  # the 3x3 conv strides: what comes before it is at the input's size
                out += [Group(f"{name}.select", "select", stage_in, cin, bn=f"{name}.bn1", stream=cin, block=s * n + b),
                        Group(f"{name}.conv1", "conv", stage_in, mid, bn=f"{name}.bn2", block=s * n + b),
                        Group(f"{name}.conv2", "conv", s, mid, bn=f"{name}.bn3", block=s * n + b)]
                cin = stream
        out.append(Group("select", "select", 2, cin, bn="bn", stream=cin))
        return out

    def group(self, spec: ArchSpec, name: str) -> Group:
        return next(g for g in self.groups(spec) if g.name == name)

    def block_layout(self, depth: int) -> list[Block]:
        return [Block(f"layer{s + 1}.{b}", removable=b > 0, branch=f"layer{s + 1}.{b}.conv3", stage=s)
                for s in range(3) for b in range(_n(depth))]

    def _walk(self, spec: ArchSpec):
        """(block name, stage, its input width, selected width, conv1, conv2, stream out, stride, downsample)
        for every kept block."""
        width = dict(zip((g.name for g in self.groups(spec)), spec.widths))
        n, keep = _n(spec.depth), self.kept_blocks(spec)
        cin = scale_width(PLANES[0], spec.width)
        for s, stream in enumerate(self.streams(spec.width)):
            for b in range(n):
                name = f"layer{s + 1}.{b}"
                if keep[s * n + b]:
                    yield (name, s, cin, width[f"{name}.select"], width[f"{name}.conv1"], width[f"{name}.conv2"],
                           stream, 2 if s > 0 and b == 0 else 1, b == 0)
                    cin = stream

    def convs(self, spec: ArchSpec) -> list[Conv]:
        stem = scale_width(PLANES[0], spec.width)
        out = [Conv("conv1", stem, spec.in_channels, 3, 0, spec.input_size)]
        for name, s, cin, sel, c1, c2, stream, stride, down in self._walk(spec):
            hw_in, hw = spec.input_size >> (s - 1 if stride > 1 else s), spec.input_size >> s
            out += [Conv(f"{name}.conv1", c1, sel, 1, s - 1 if stride > 1 else s, hw_in),
                    Conv(f"{name}.conv2", c2, c1, 3, s, hw), Conv(f"{name}.conv3", stream, c2, 1, s, hw)]
            if down:
                out.append(Conv(f"{name}.downsample.0", stream, cin, 1, s, hw))
        return out

    def wires(self, spec: ArchSpec) -> dict[str, tuple[str | None, str | None]]:
        w: dict[str, tuple[str | None, str | None]] = {}
        for g in self.groups(spec):
            if g.name == "select":
                w["fc"] = (None, "select")
                continue
            block, part = g.name.rsplit(".", 1)
            if part == "select":
                w[f"{block}.conv1"] = (f"{block}.conv1", g.name)
            elif part == "conv1":
                w[g.bn] = (g.name, None)
                w[f"{block}.conv2"] = (f"{block}.conv2", g.name)
            else:
                w[g.bn] = (g.name, None)
                w[f"{block}.conv3"] = (None, g.name)
        return w

    def ops(self, spec: ArchSpec) -> list[Op]:
        nz = {c: int(m.sum()) for c, m in spec.masks.items()} if spec.masks is not None else {}
        stem = scale_width(PLANES[0], spec.width)
        ops = [Op("conv", spec.in_channels, stem, spec.input_size, k=3, nonzero=nz.get("conv1"))]
        cin, hw = stem, spec.input_size
        for name, s, cin, sel, c1, c2, stream, stride, down in self._walk(spec):
            hw_in, hw = spec.input_size >> (s - 1 if stride > 1 else s), spec.input_size >> s
            # BN on the whole stream, then the selection (free), then ReLU on what it let through
            ops += [Op("bn", cin, cin, hw_in), Op("relu", sel, sel, hw_in),
                    Op("conv", sel, c1, hw_in, k=1, nonzero=nz.get(f"{name}.conv1")),
                    Op("bn", c1, c1, hw_in), Op("relu", c1, c1, hw_in),
                    Op("conv", c1, c2, hw, k=3, nonzero=nz.get(f"{name}.conv2")),
                    Op("bn", c2, c2, hw), Op("relu", c2, c2, hw),
                    Op("conv", c2, stream, hw, k=1, nonzero=nz.get(f"{name}.conv3"))]
            if down:
                ops.append(Op("conv", cin, stream, hw, k=1, nonzero=nz.get(f"{name}.downsample.0")))
            cin = stream
        final = spec.widths[-1]
        k = final_hw(spec, 2, exact=True)
        ops += [Op("bn", cin, cin, hw), Op("relu", final, final, hw), Op("avgpool", final, final, hw // k, k=k),
                Op("linear", final, spec.num_classes, 1)]
        return ops

    def module(self, spec: ArchSpec) -> nn.Module:
        return PreResNet(spec, self)
