"""The paper's ImageNet networks ("Rethinking", `imagenet/*`): torchvision's ResNets and the VGGs.

Source: Eric-mingjie/rethinking-network-pruning at commit 2ac473d70a09810df888e932bb394f225f9ed2d1
(files named from its root). Its ImageNet code runs torchvision 0.2.0.

`inresnet` (depths 18, 34, 50, 101, 152) is torchvision's ResNet exactly
(`torchvision.models.resnet18` ... `resnet152`), the network of the paper's ImageNet ResNet
experiments (`imagenet/l1-norm-pruning/resnet.py` is torchvision's ResNet with a per-block width
for conv1; `imagenet/weight-level` builds `resnet50` from torchvision): a 7x7 stride-2 stem conv
of 64 with BN and ReLU, a 3x3 stride-2 max-pool, four stages of blocks (64, 128, 256, 512
planes; basic blocks for 18 and 34, bottlenecks of expansion 4 from 50 up, striding in their
3x3 conv: "v1.5"), a 1x1 conv + BN shortcut where a block changes shape, a global average pool
and one linear layer. Init as torchvision's: conv weights He normal over fan-out, BN scale 1 and
shift 0 (zero_init_residual off), the linear layer PyTorch's default. Channel groups, as the
paper's ImageNet L1-norm (`imagenet/l1-norm-pruning/prune.py`: "cfg" = each basic block's conv1),
ThiNet and regression pruning prune: the inner convs of each block (a basic block's conv1; a
bottleneck's conv1 and conv2). The residual stream keeps its width.

`invgg` (depths 11, 13, 16, 19): 3x3 convs (with bias) -> BN -> ReLU, a 2x2 max-pool after
each stage (five), the last map flattened into a classifier of two hidden linear layers of 4096:
- 11: Network Slimming's VGG-11 (`imagenet/network-slimming/vgg.py`, `slimmingvgg`, cfg "A"):
  classifier Linear -> BatchNorm1d -> ReLU -> Linear -> BatchNorm1d -> ReLU -> Linear, no
  dropout; BN scales (2d and 1d) start at 0.5, linear weights N(0, 0.01). Its `prune.py`
  ranks every BatchNorm2d and BatchNorm1d scale under one global threshold, so the two hidden
  widths are channel groups too.
- 16: torchvision's `vgg16_bn`, the paper's ImageNet VGG-16 (`imagenet/weight-level`:
  `models.__dict__['vgg16_bn']`; the repo's copy of that definition without BN is
  `vgg_official` in `imagenet/regression-pruning/models/vgg_5x.py`): classifier Linear -> ReLU ->
  Dropout -> Linear -> ReLU -> Dropout -> Linear; BN scale 1; linear weights N(0, 0.01). Its
  hidden widths stay fixed (the weight-level code masks conv weights only).
- 13, 19: torchvision's `vgg13_bn` and `vgg19_bn`, the same definition as 16 (not in the paper).
No pool before the classifier, as in both originals (torchvision 0.2.0 had none): the
classifier reads the flattened C x s x s map, s = input size / 32: 512 x 7 x 7 at 224 px, as
there. (torchvision >= 0.4 adds an adaptive 7x7 average pool, the identity at 224 px; at other
sizes the originals do not run at all.)

Stages are feature-map sizes, numbered from the first one a channel group lives at (the spec's
stages start at 0 with none empty): for invgg 0 at the input resolution, and the classifier's
hidden groups (VGG-11) at 5, the size of the map it reads; for inresnet 0 is the stem's output
after the max-pool (56 px at 224), +1 per stage, and the stem conv (112 px, no group) counts
with stage 0. A group sits at the stage of its output, so a bottleneck's conv1 in the first
block of a stage is still at the stage before (the 3x3 conv strides), as in PreResNet.

Counting (`archsearch.counting`, convention `original`, the paper's ImageNet
`compute_flops.py`): its hooks count every conv (2 ops per non-zero weight and output pixel,
plus one per output for a bias), linear, BatchNorm2d (2 per element), ReLU call (1 per input
element) and MaxPool2d / AvgPool2d (k x k per output); a BatchNorm1d (VGG-11's classifier) and
Dropout are not counted. The ResNets' final pool is counted as the paper's code builds it,
`nn.AvgPool2d(7, stride=1)` (`imagenet/l1-norm-pruning/resnet.py`): k x k per output with k the
last map's side (7 at 224 px); the module here is torchvision's adaptive pool, the same function.
"""

from __future__ import annotations

import math

from torch import nn

from ..families import register_family
from ..spec import ArchSpec
from .base import Block, Conv, Family, Group, Op, final_hw, he_init_, scale_width
from .vgg import STAGE_CFGS, _layer_index

# -- torchvision's ResNets ---------------------------------------------------------------------
RESNET_LAYERS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3)),
}
RESNET_PLANES = (64, 128, 256, 512)
STEM = 64


def _half(hw: int) -> int:
    """Side after a stride-2 conv or pool with 'same' padding (torchvision's 7x7/3 stem, 3x3/1
    convs, 3x3/1 max-pool, 1x1/0 shortcut): ceil(hw / 2)."""
    return (hw + 1) // 2


class BasicBlock(nn.Module):
    def __init__(self, cin: int, mid: int, out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.downsample = _shortcut(cin, out, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, c1: int, c2: int, out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, out, stride)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _shortcut(cin: int, out: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == out:
        return None
    return nn.Sequential(nn.Conv2d(cin, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))


class ResNet(nn.Module):
    def __init__(self, spec: ArchSpec, fam: "InResNetFamily"):
        super().__init__()
        stem = scale_width(STEM, spec.width)
        self.conv1 = nn.Conv2d(spec.in_channels, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        kind, layers = RESNET_LAYERS[spec.depth]
        blocks: list[list[nn.Module]] = [[nn.Identity() for _ in range(n)] for n in layers]
        for b in fam.walk(spec):
            blocks[b.s][b.b] = (BasicBlock(b.cin, b.mids[0], b.out, b.stride) if kind == "basic" else
                                Bottleneck(b.cin, b.mids[0], b.mids[1], b.out, b.stride))
        for s, bs in enumerate(blocks):
            setattr(self, f"layer{s + 1}", nn.Sequential(*bs))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(fam.streams(spec)[-1], spec.num_classes)
        he_init_(self, bn_gamma=1.0)  # torchvision: kaiming_normal_(fan_out, relu), BN 1 / 0

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


class _Kept:
    """One kept block as the walk sees it."""

    def __init__(self, name, s, b, cin, mids, out, stride, hw_in, hw):
        self.name, self.s, self.b, self.cin, self.mids, self.out = name, s, b, cin, mids, out
        self.stride, self.hw_in, self.hw = stride, hw_in, hw

    @property
    def down(self) -> bool:
        return self.stride != 1 or self.cin != self.out


@register_family
class InResNetFamily(Family):
    name = "inresnet"
    title = "torchvision's ResNet"
    nets, alias = "imagenet", "resnet"
    depths = tuple(sorted(RESNET_LAYERS))

    def streams(self, spec: ArchSpec) -> list[int]:
        """The residual stream's width per stage (planes x expansion)."""
        exp = 1 if RESNET_LAYERS[spec.depth][0] == "basic" else 4
        return [exp * scale_width(p, spec.width) for p in RESNET_PLANES]

    def layout(self, depth: int, width: float) -> list[Group]:
        kind, layers = RESNET_LAYERS[depth]
        out, i = [], 0
        for s, (p, n) in enumerate(zip(RESNET_PLANES, layers)):
            mid = scale_width(p, width)
            for b in range(n):
                name = f"layer{s + 1}.{b}"
                if kind == "basic":
                    out.append(Group(f"{name}.conv1", "conv", s, mid, bn=f"{name}.bn1", block=i))
                else:  # the 3x3 conv strides: the 1x1 before it is still at the previous size
                    out += [Group(f"{name}.conv1", "conv", s - 1 if s > 0 and b == 0 else s, mid, bn=f"{name}.bn1",
                                  block=i),
                            Group(f"{name}.conv2", "conv", s, mid, bn=f"{name}.bn2", block=i)]
                i += 1
        return out

    def block_layout(self, depth: int) -> list[Block]:
        # a block with a 1x1 shortcut (it strides or widens the stream) has no identity stand-in
        kind, layers = RESNET_LAYERS[depth]
        last = "bn2" if kind == "basic" else "bn3"
        return [Block(f"layer{s + 1}.{b}", removable=not (b == 0 and (s > 0 or kind == "bottleneck")),
                      branch=f"layer{s + 1}.{b}.{last}", stage=s)
                for s, n in enumerate(layers) for b in range(n)]

    def stem_hw(self, spec: ArchSpec) -> tuple[int, int]:
        """Side after the stem conv, and after the max-pool."""
        hw = _half(spec.input_size)
        return hw, _half(hw)

    def walk(self, spec: ArchSpec):
        """Every kept block: its name, stage, input width, inner widths, output width, stride and sides."""
        kind, layers = RESNET_LAYERS[spec.depth]
        per = 1 if kind == "basic" else 2
        keep, streams = self.kept_blocks(spec), self.streams(spec)
        cin, hw, i = scale_width(STEM, spec.width), self.stem_hw(spec)[1], 0
        for s, n in enumerate(layers):
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                hw_in, hw = hw, _half(hw) if stride == 2 else hw
                if keep[i]:
                    yield _Kept(f"layer{s + 1}.{b}", s, b, cin, spec.widths[per * i:per * i + per], streams[s], stride,
                                hw_in, hw)
                    cin = streams[s]
                i += 1

    def final_side(self, spec: ArchSpec) -> int:
        hw = self.stem_hw(spec)[1]
        for _ in range(len(RESNET_PLANES) - 1):
            hw = _half(hw)
        return hw

    def convs(self, spec: ArchSpec) -> list[Conv]:
        stem = scale_width(STEM, spec.width)
        out = [Conv("conv1", stem, spec.in_channels, 7, 0, self.stem_hw(spec)[0])]
        for b in self.walk(spec):
            if len(b.mids) == 1:
                out += [Conv(f"{b.name}.conv1", b.mids[0], b.cin, 3, b.s, b.hw),
                        Conv(f"{b.name}.conv2", b.out, b.mids[0], 3, b.s, b.hw)]
            else:
                s_in = b.s - 1 if b.stride > 1 else b.s
                out += [Conv(f"{b.name}.conv1", b.mids[0], b.cin, 1, s_in, b.hw_in),
                        Conv(f"{b.name}.conv2", b.mids[1], b.mids[0], 3, b.s, b.hw),
                        Conv(f"{b.name}.conv3", b.out, b.mids[1], 1, b.s, b.hw)]
            if b.down:
                out.append(Conv(f"{b.name}.downsample.0", b.out, b.cin, 1, b.s, b.hw))
        return out

    def wires(self, spec: ArchSpec) -> dict[str, tuple[str | None, str | None]]:
        gs = self.groups(spec)
        names = {g.name for g in gs}
        w: dict[str, tuple[str | None, str | None]] = {}
        for g in gs:  # a group's conv and BN; the next conv of its block reads it
            block, part = g.name.rsplit(".", 1)
            w[g.bn] = (g.name, None)
            w.setdefault(g.name, (g.name, None))
            reader = f"{block}.conv{int(part[-1]) + 1}"
            w[reader] = (reader if reader in names else None, g.name)
        return w

    def ops(self, spec: ArchSpec) -> list[Op]:
        nz = {c: int(m.sum()) for c, m in spec.masks.items()} if spec.masks is not None else {}
        stem, (hw1, hw2) = scale_width(STEM, spec.width), self.stem_hw(spec)
        ops = [Op("conv", spec.in_channels, stem, hw1, k=7, nonzero=nz.get("conv1")), Op("bn", stem, stem, hw1),
               Op("relu", stem, stem, hw1), Op("maxpool", stem, stem, hw2, k=3)]
        cin = stem
        for b in self.walk(spec):
            if len(b.mids) == 1:
                m = b.mids[0]
                ops += [Op("conv", b.cin, m, b.hw, k=3, nonzero=nz.get(f"{b.name}.conv1")), Op("bn", m, m, b.hw),
                        Op("relu", m, m, b.hw), Op("conv", m, b.out, b.hw, k=3, nonzero=nz.get(f"{b.name}.conv2")),
                        Op("bn", b.out, b.out, b.hw)]
            else:
                c1, c2 = b.mids
                ops += [Op("conv", b.cin, c1, b.hw_in, k=1, nonzero=nz.get(f"{b.name}.conv1")),
                        Op("bn", c1, c1, b.hw_in), Op("relu", c1, c1, b.hw_in),
                        Op("conv", c1, c2, b.hw, k=3, nonzero=nz.get(f"{b.name}.conv2")), Op("bn", c2, c2, b.hw),
                        Op("relu", c2, c2, b.hw), Op("conv", c2, b.out, b.hw, k=1, nonzero=nz.get(f"{b.name}.conv3")),
                        Op("bn", b.out, b.out, b.hw)]
            if b.down:
                ops += [Op("conv", b.cin, b.out, b.hw, k=1, nonzero=nz.get(f"{b.name}.downsample.0")),
                        Op("bn", b.out, b.out, b.hw)]
            ops.append(Op("relu", b.out, b.out, b.hw))  # after the add
            cin = b.out
        # the paper's code pools with nn.AvgPool2d(7, stride=1) (imagenet/l1-norm-pruning/resnet.py), which
        # its counter sees: k x k per output, k the last side; torchvision's adaptive pool is the same function
        k = self.final_side(spec)
        ops += [Op("avgpool", cin, cin, 1, k=k), Op("linear", cin, spec.num_classes, 1)]
        return ops

    def module(self, spec: ArchSpec) -> nn.Module:
        return ResNet(spec, self)


# -- the ImageNet VGGs -------------------------------------------------------------------------
HIDDEN = 4096
SLIMMING = (11,)  # depths that follow imagenet/network-slimming/vgg.py; the rest torchvision's vggD_bn
POOLS = 5         # max-pools, one after each stage


class VGG(nn.Module):
    def __init__(self, spec: ArchSpec, fam: "InVGGFamily"):
        super().__init__()
        nconv = sum(len(st) for st in STAGE_CFGS[spec.depth])
        convs, hidden = spec.widths[:nconv], fam.hidden(spec)
        layers: list[nn.Module] = []
        cin = spec.in_channels
        for i, (w, s) in enumerate(zip(convs, spec.stages)):
            if i > 0 and s != spec.stages[i - 1]:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            layers += [nn.Conv2d(cin, w, kernel_size=3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            cin = w
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        side = final_hw(spec, POOLS)
        h1, h2 = hidden
        if spec.depth in SLIMMING:
            self.classifier = nn.Sequential(
                nn.Linear(cin * side * side, h1), nn.BatchNorm1d(h1), nn.ReLU(True),
                nn.Linear(h1, h2), nn.BatchNorm1d(h2), nn.ReLU(True), nn.Linear(h2, spec.num_classes))
        else:
            self.classifier = nn.Sequential(
                nn.Linear(cin * side * side, h1), nn.ReLU(True), nn.Dropout(),
                nn.Linear(h1, h2), nn.ReLU(True), nn.Dropout(), nn.Linear(h2, spec.num_classes))
        self._init_weights(0.5 if spec.depth in SLIMMING else 1.0)

    def _init_weights(self, bn_gamma: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # kaiming_normal_(fan_out, relu) in both originals
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.constant_(m.weight, bn_gamma)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


@register_family
class InVGGFamily(Family):
    name = "invgg"
    title = "the paper's ImageNet VGG"
    nets, alias = "imagenet", "vgg"
    depths = tuple(sorted(STAGE_CFGS))

    def layout(self, depth: int, width: float) -> list[Group]:
        stages = [s for s, stage in enumerate(STAGE_CFGS[depth]) for _ in stage]
        widths = [scale_width(w, width) for stage in STAGE_CFGS[depth] for w in stage]
        out = [Group(f"features.{j}", "conv", s, w, bn=f"features.{j + 1}")
               for j, s, w in zip(_layer_index(stages), stages, widths)]  # the CIFAR VGG's layout of features
        if depth in SLIMMING:  # Network Slimming prunes the BatchNorm1d channels of the classifier too
            h = scale_width(HIDDEN, width)
            out += [Group("classifier.0", "conv", POOLS, h, bn="classifier.1"),
                    Group("classifier.3", "conv", POOLS, h, bn="classifier.4")]
        return out

    def n_convs(self, spec: ArchSpec) -> int:
        return sum(len(st) for st in STAGE_CFGS[spec.depth])

    def hidden(self, spec: ArchSpec) -> tuple[int, int]:
        if spec.depth in SLIMMING:
            return spec.widths[-2], spec.widths[-1]
        h = scale_width(HIDDEN, spec.width)
        return h, h

    def convs(self, spec: ArchSpec) -> list[Conv]:
        n = self.n_convs(spec)
        ws, ss = spec.widths[:n], spec.stages[:n]
        cins = [spec.in_channels] + ws[:-1]
        return [Conv(g.name, w, c, 3, s, spec.input_size >> s)
                for g, w, c, s in zip(self.groups(spec), ws, cins, ss)]

    def wires(self, spec: ArchSpec) -> dict[str, tuple[str | None, str | None]]:
        gs = self.groups(spec)
        n = self.n_convs(spec)
        w: dict[str, tuple[str | None, str | None]] = {}
        prev = None
        for g in gs[:n]:
            w[g.name] = (g.name, prev)
            w[g.bn] = (g.name, None)
            prev = g.name
        if spec.depth in SLIMMING:  # classifier.0 reads the flattened map: `narrow` takes H*W inputs per channel
            w["classifier.0"], w["classifier.1"] = ("classifier.0", prev), ("classifier.0", None)
            w["classifier.3"], w["classifier.4"] = ("classifier.3", "classifier.0"), ("classifier.3", None)
            w["classifier.6"] = (None, "classifier.3")
        else:
            w["classifier.0"] = (None, prev)
        return w

    def ops(self, spec: ArchSpec) -> list[Op]:
        n = self.n_convs(spec)
        ops: list[Op] = []
        hw, cin = spec.input_size, spec.in_channels
        nonzero = [None] * n if spec.masks is None else [int(spec.masks[c.name].sum()) for c in self.convs(spec)]
        for i, (w, s) in enumerate(zip(spec.widths[:n], spec.stages[:n])):
            if i > 0 and s != spec.stages[i - 1]:
                hw //= 2
                ops.append(Op("maxpool", cin, cin, hw, k=2))
            ops += [Op("conv", cin, w, hw, k=3, nonzero=nonzero[i], bias=True), Op("bn", w, w, hw),
                    Op("relu", w, w, hw)]
            cin = w
        side = final_hw(spec, POOLS)
        ops.append(Op("maxpool", cin, cin, side, k=2))
        h1, h2 = self.hidden(spec)
        feat = cin * side * side
        if spec.depth in SLIMMING:  # the original counter hooks BatchNorm2d only, not these BatchNorm1d
            ops += [Op("linear", feat, h1, 1), Op("bn", h1, h1, 1, in_original=False), Op("relu", h1, h1, 1),
                    Op("linear", h1, h2, 1), Op("bn", h2, h2, 1, in_original=False), Op("relu", h2, h2, 1)]
        else:  # dropout: no parameters, not counted
            ops += [Op("linear", feat, h1, 1), Op("relu", h1, h1, 1), Op("linear", h1, h2, 1), Op("relu", h2, h2, 1)]
        ops.append(Op("linear", h2, spec.num_classes, 1))
        return ops

    def module(self, spec: ArchSpec) -> nn.Module:
        return VGG(spec, self)
