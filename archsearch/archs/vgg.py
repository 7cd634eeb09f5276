"""The CIFAR VGG of Network Slimming and "Rethinking" (Liu et al. 2017; 2019).

3x3 conv (no bias) -> BN -> ReLU, 2x2 max-pool between stages, a final average pool
and one linear layer; BN gamma starts at 0.5 (the slimming code's init, which makes the
L1 penalty on gamma meaningful from the first step). Widths are per-layer data (as in
timm's `cfgs`), so base, pruned, guided, transferred and uniform VGGs are all this class.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import ArchsearchError
from ..spec import ArchSpec
from . import Family, Op, register_family

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
        self.pool = nn.AvgPool2d(_final_hw(spec))
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


def _final_hw(spec: ArchSpec) -> int:
    hw = spec.input_size // 2 ** (spec.num_stages - 1)
    if hw < 1:
        raise ArchsearchError(f"input size {spec.input_size} is too small for {spec.num_stages} stages")
    return hw


@register_family
class VGGFamily(Family):
    name = "vgg"
    depths = tuple(sorted(STAGE_CFGS))

    def base_widths(self, depth: int) -> list[int]:
        return [w for stage in STAGE_CFGS[depth] for w in stage]

    def stages(self, depth: int) -> list[int]:
        return [s for s, stage in enumerate(STAGE_CFGS[depth]) for _ in stage]

    def conv_shapes(self, spec: ArchSpec) -> list[tuple[int, ...]]:
        cins = [spec.in_channels] + spec.widths[:-1]
        return [(w, c, 3, 3) for w, c in zip(spec.widths, cins)]

    def ops(self, spec: ArchSpec) -> list[Op]:
        ops: list[Op] = []
        hw, cin = spec.input_size, spec.in_channels
        density = spec.masks
        for i, (w, s) in enumerate(zip(spec.widths, spec.stages)):
            if i > 0 and s != spec.stages[i - 1]:
                hw //= 2
                ops.append(Op("maxpool", cin, cin, hw, k=2))
            nz = None if density is None else int(density[i].sum())
            ops += [Op("conv", cin, w, hw, k=3, nonzero=nz), Op("bn", w, w, hw), Op("relu", w, w, hw)]
            cin = w
        k = _final_hw(spec)
        ops.append(Op("avgpool", cin, cin, hw // k, k=k))
        ops.append(Op("linear", cin, spec.num_classes, 1))
        return ops

    def module(self, spec: ArchSpec) -> nn.Module:
        return VGG(spec)

    def select_channels(self, model: nn.Module, keep: list[np.ndarray]) -> dict[str, torch.Tensor]:
        convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
        if len(keep) != len(convs):
            raise ValueError(f"{len(keep)} keep masks for {len(convs)} conv layers")
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        idx_in = torch.arange(convs[0][1].in_channels)
        for (cname, _), (bname, _), k in zip(convs, bns, keep):
            idx_out = torch.from_numpy(np.flatnonzero(k))
            state[f"{cname}.weight"] = state[f"{cname}.weight"][idx_out][:, idx_in].clone()
            state.pop(f"{cname}.weight_mask", None)
            for p in ("weight", "bias", "running_mean", "running_var"):
                state[f"{bname}.{p}"] = state[f"{bname}.{p}"][idx_out].clone()
            idx_in = idx_out
        state["classifier.weight"] = state["classifier.weight"][:, idx_in].clone()
        return state
