"""The CIFAR VGG of Network Slimming and "Rethinking" (Liu et al. 2017; 2019).

3x3 conv (no bias) -> BN -> ReLU, 2x2 max-pool between stages, a final average pool
and one linear layer; BN gamma starts at 0.5 (the slimming code's init, which makes the
L1 penalty on gamma meaningful from the first step). Widths are per-layer data (as in
timm's `cfgs`), so base, pruned, guided, transferred and uniform VGGs are all this class.
"""

from __future__ import annotations

import math

from torch import nn

from ..families import register_family
from ..spec import ArchSpec
from .base import Conv, Family, Group, Op, final_hw, scale_width

# widths per stage; a stage = the layers between two max-pools (same feature-map size)
STAGE_CFGS: dict[int, list[list[int]]] = {
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    16: [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    19: [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


class VGG(nn.Module):
    def __init__(self, spec: ArchSpec):
        super().__init__()
        layers: list[nn.Module] = []
        cin = spec.in_channels
        for i, (w, s) in enumerate(zip(spec.widths, spec.stages)):
            if i > 0 and s != spec.stages[i - 1]:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            layers += [nn.Conv2d(cin, w, kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(final_hw(spec, spec.num_stages - 1))
        self.classifier = nn.Linear(cin, spec.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init over fan-out, as in the slimming code
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 0.5)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.pool(self.features(x))
        return self.classifier(x.flatten(1))


def _layer_index(spec_stages: list[int]) -> list[int]:
    """Index of each conv in `features` (conv, BN, ReLU per layer; a max-pool between stages)."""
    out, j = [], 0
    for i, s in enumerate(spec_stages):
        if i > 0 and s != spec_stages[i - 1]:
            j += 1
        out.append(j)
        j += 3
    return out


@register_family
class VGGFamily(Family):
    name = "vgg"
    title = "the CIFAR VGG"
    depths = tuple(sorted(STAGE_CFGS))

    def layout(self, depth: int, width: float) -> list[Group]:
        stages = [s for s, stage in enumerate(STAGE_CFGS[depth]) for _ in stage]
        widths = [scale_width(w, width) for stage in STAGE_CFGS[depth] for w in stage]
        return [Group(f"features.{j}", "conv", s, w, bn=f"features.{j + 1}")
                for j, s, w in zip(_layer_index(stages), stages, widths)]

    def convs(self, spec: ArchSpec) -> list[Conv]:
        cins = [spec.in_channels] + spec.widths[:-1]
        return [Conv(g.name, w, c, 3, s, spec.input_size >> s)
                for g, w, c, s in zip(self.groups(spec), spec.widths, cins, spec.stages)]

    def wires(self, spec: ArchSpec) -> dict[str, tuple[str | None, str | None]]:
        gs = self.groups(spec)
        w: dict[str, tuple[str | None, str | None]] = {}
        prev = None
        for g in gs:
            w[g.name] = (g.name, prev)
            w[g.bn] = (g.name, None)
            prev = g.name
        w["classifier"] = (None, prev)
        return w

    def ops(self, spec: ArchSpec) -> list[Op]:
        ops: list[Op] = []
        hw, cin = spec.input_size, spec.in_channels
        nonzero = [None] * len(spec.widths) if spec.masks is None else \
            [int(spec.masks[c.name].sum()) for c in self.convs(spec)]
        for i, (w, s) in enumerate(zip(spec.widths, spec.stages)):
            if i > 0 and s != spec.stages[i - 1]:
                hw //= 2
                ops.append(Op("maxpool", cin, cin, hw, k=2))
            ops += [Op("conv", cin, w, hw, k=3, nonzero=nonzero[i]), Op("bn", w, w, hw), Op("relu", w, w, hw)]
            cin = w
        k = final_hw(spec, spec.num_stages - 1)
        # the original VGG builds this pool inside forward (`nn.AvgPool2d(2)(x)` in
        # cifar/network-slimming/models/vgg.py), so the original counter never adds it
        ops.append(Op("avgpool", cin, cin, hw // k, k=k, in_original=False))
        ops.append(Op("linear", cin, spec.num_classes, 1))
        return ops

    def module(self, spec: ArchSpec) -> nn.Module:
        return VGG(spec)
