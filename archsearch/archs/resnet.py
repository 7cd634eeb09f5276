"""The CIFAR ResNet of the L1-norm pruning code ("Rethinking", `cifar/l1-norm-pruning/models/resnet.py`).

Depth 6n+2: a 3x3 stem conv of 16 channels with BN and ReLU, three stages of n basic
blocks (16, 32, 64 channels; the first block of stages 2 and 3 strides by 2), an 8x8
average pool and one linear layer. A basic block is conv3x3 -> BN -> ReLU -> conv3x3 -> BN,
plus the shortcut, then ReLU. Where a block changes shape the shortcut is the original's
option A: a 2x2 average pool and zero channels appended (no parameters). BN scales start at
1. Li et al. (2017) prune only the first conv of each block (its output is read by the
block's second conv alone, so nothing else couples to it): that conv's outputs are one
channel group per block; the residual stream keeps its width.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..families import register_family
from ..spec import ArchSpec
from .base import Block, Conv, Family, Group, Op, final_hw, he_init_, scale_width

PLANES = (16, 32, 64)


def _n(depth: int) -> int:
    return (depth - 2) // 6


class BasicBlock(nn.Module):
    def __init__(self, cin: int, mid: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.stride, self.pad = stride, planes - cin

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        res = x
        if self.stride != 1:
            res = F.avg_pool2d(res, self.stride, self.stride)
        if self.pad:
            res = F.pad(res, (0, 0, 0, 0, 0, self.pad))  # zero channels appended (option A)
        return self.relu(out + res)


class ResNet(nn.Module):
    def __init__(self, spec: ArchSpec, fam: "ResNetFamily"):
        super().__init__()
        planes = fam.planes(spec.width)
        self.conv1 = nn.Conv2d(spec.in_channels, planes[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        n, mids, keep = _n(spec.depth), iter(spec.widths), iter(fam.kept_blocks(spec))
        cin = planes[0]
        for s, p in enumerate(planes):
            blocks = []
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                mid, kept = next(mids), next(keep)
                blocks.append(BasicBlock(cin, mid, p, stride) if kept else nn.Identity())
                cin = p
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AvgPool2d(final_hw(spec, 2, exact=True))
        self.fc = nn.Linear(cin, spec.num_classes)
        he_init_(self, bn_gamma=1.0)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


@register_family
class ResNetFamily(Family):
    name = "resnet"
    title = "the CIFAR ResNet"
    depths = (20, 32, 44, 56, 110)
    depth_step, depth_offset, min_depth, max_depth = 6, 2, 8, 2000

    def planes(self, width: float) -> list[int]:
        return [scale_width(p, width) for p in PLANES]

    def layout(self, depth: int, width: float) -> list[Group]:
        planes, n = self.planes(width), _n(depth)
        return [Group(f"layer{s + 1}.{b}.conv1", "conv", s, p, bn=f"layer{s + 1}.{b}.bn1", block=s * n + b)
                for s, p in enumerate(planes) for b in range(n)]

    def block_layout(self, depth: int) -> list[Block]:
        # a block that strides or widens the stream has no identity stand-in
        return [Block(f"layer{s + 1}.{b}", removable=not (s > 0 and b == 0), branch=f"layer{s + 1}.{b}.bn2",
                      stage=s)
                for s in range(3) for b in range(_n(depth))]

    def convs(self, spec: ArchSpec) -> list[Conv]:
        planes, n = self.planes(spec.width), _n(spec.depth)
        out = [Conv("conv1", planes[0], spec.in_channels, 3, 0, spec.input_size)]
        keep, mids = self.kept_blocks(spec), iter(spec.widths)
        cin = planes[0]
        for s, p in enumerate(planes):
            hw = spec.input_size >> s
            for b in range(n):
                mid = next(mids)
                if keep[s * n + b]:
                    out += [Conv(f"layer{s + 1}.{b}.conv1", mid, cin, 3, s, hw),
                            Conv(f"layer{s + 1}.{b}.conv2", p, mid, 3, s, hw)]
                cin = p
        return out

    def wires(self, spec: ArchSpec) -> dict[str, tuple[str | None, str | None]]:
        w: dict[str, tuple[str | None, str | None]] = {}
        for g in self.groups(spec):
            block = g.name.rsplit(".", 1)[0]
            w[g.name] = (g.name, None)
            w[g.bn] = (g.name, None)
            w[f"{block}.conv2"] = (None, g.name)
        return w

    def ops(self, spec: ArchSpec) -> list[Op]:
        planes, n = self.planes(spec.width), _n(spec.depth)
        nz = {c: int(m.sum()) for c, m in spec.masks.items()} if spec.masks is not None else {}
        hw, cin = spec.input_size, planes[0]
        ops = [Op("conv", spec.in_channels, cin, hw, k=3, nonzero=nz.get("conv1")), Op("bn", cin, cin, hw),
               Op("relu", cin, cin, hw)]
        keep, mids = self.kept_blocks(spec), iter(spec.widths)
        for s, p in enumerate(planes):
            hw = spec.input_size >> s
            for b in range(n):
                mid, name = next(mids), f"layer{s + 1}.{b}"
                if keep[s * n + b]:
                    # the shortcut's pool and zero channels are functional: no parameters, and
                    # the original FLOP counter (module hooks) does not see them
                    ops += [Op("conv", cin, mid, hw, k=3, nonzero=nz.get(f"{name}.conv1")), Op("bn", mid, mid, hw),
                            Op("relu", mid, mid, hw), Op("conv", mid, p, hw, k=3, nonzero=nz.get(f"{name}.conv2")),
                            Op("bn", p, p, hw), Op("relu", p, p, hw)]
                cin = p
        k = final_hw(spec, 2, exact=True)
        ops.append(Op("avgpool", cin, cin, hw // k, k=k))
        ops.append(Op("linear", cin, spec.num_classes, 1))
        return ops

    def module(self, spec: ArchSpec) -> nn.Module:
        return ResNet(spec, self)
