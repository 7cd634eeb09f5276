"""L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017).

Train the base net plainly, then each channel group keeps the int(n x (1 - ratio)) filters
of its conv with the largest L1 norm (`np.sum(|W|, axis=(1, 2, 3))`), at a ratio fixed in
advance per layer: the method does not choose the widths, its configuration does. That is
why Liu et al. (2019) call its architectures "predefined".

The paper's configurations are named variants, exactly as the rethinking repository's
`cifar/l1-norm-pruning/vggprune.py`, `res56prune.py` and `res110prune.py` define them
(`archsearch extract --from l1norm-resnet56-c10 --variant A`, or `l1norm-resnet56-c10.A`):
- VGG-16-A: conv 1 and the six convs of the last two stages keep half their filters
  (`cfg = [32, 64, M, 128, 128, M, 256, 256, 256, M, 256, 256, 256, M, 256, 256, 256]`).
- ResNet-56-A/B and ResNet-110-A/B: the first conv of each block is pruned at a per-stage
  ratio, except the blocks of a skip list (the layers the original found sensitive). The
  original numbers layers from 1 over all convs (the stem is 1), so block b's first conv is
  layer 2 + 2b; its skip lists are kept below in those numbers and converted.
Without a variant: one `--ratio` for every group, or `--stage-ratios` (one per stage) with
an optional `--skip` list of group names.

Only conv groups have filters of their own: the method applies to every family whose
channel groups are all conv groups (VGG and ResNet, as in the paper; the ImageNet networks;
`tv.*` torchvision models, where a group of coupled convs is ranked by its root conv's
filters, Torch-Pruning's `MagnitudeImportance(p=1, group_reduction="first")`), not to
PreResNet and DenseNet, whose channel selections have no filters. The l1-norm code's VGG has a 512-512-classes classifier with BatchNorm1d; archsearch's
VGG family is Network Slimming's (one linear layer), so a VGG-16-A built here has the same
conv widths as the paper's and fewer classifier parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..archs import get_family
from ..errors import ArchsearchError
from ..spec import ArchSpec
from .allocation import PredefinedRatios
from ..schedule import FineTune
from .base import Pruned, Proposer, Settings, channel_proposal, register_proposer
from .importance import filter_norm
from .options import PerLayerOptions

_ORIGINAL_SKIP = {  # layer ids of the original scripts (1 = the stem conv; block b's first conv = 2 + 2b)
    ("resnet56", "A"): [16, 20, 38, 54], ("resnet56", "B"): [16, 18, 20, 34, 38, 54],
    ("resnet110", "A"): [36], ("resnet110", "B"): [36, 38, 74],
}
_ORIGINAL_STAGE = {
    ("resnet56", "A"): [0.1, 0.1, 0.1], ("resnet56", "B"): [0.6, 0.3, 0.1],
    ("resnet110", "A"): [0.5, 0.0, 0.0], ("resnet110", "B"): [0.5, 0.4, 0.3],
}
# VGG-16-A, per conv (vggprune.py's cfg against VGG-16's [64, 64, M, 128, ..., 512 x 6])
_VGG16_A = [0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]


def variants() -> dict[str, list[str]]:
    """Per architecture, the variant names it ships."""
    out: dict[str, list[str]] = {"vgg16": ["A"]}
    for arch, v in _ORIGINAL_SKIP:
        out.setdefault(arch, []).append(v)
    return out


def variant_ratios(base: ArchSpec, variant: str) -> list[float]:
    """One prune ratio per channel group of `base` for the paper's named configuration."""
    key = (base.name, variant)
    if base.name == "vgg16" and variant == "A":
        return list(_VGG16_A)
    if key not in _ORIGINAL_STAGE:
        known = "; ".join(f"{a}: {', '.join(v)}" for a, v in variants().items())
        raise ArchsearchError(f"l1norm has no variant {variant!r} for {base.name} (variants: {known})")
    skip_blocks = {(layer - 2) // 2 for layer in _ORIGINAL_SKIP[key]}
    stage = _ORIGINAL_STAGE[key]
    return [0.0 if g.block in skip_blocks else stage[g.stage] for g in get_family(base.family).groups(base)]


@dataclass(frozen=True)
class L1NormOptions(PerLayerOptions):
    pass  # the predefined-ratio options at their defaults (ratio 0.5 per group)


@register_proposer
class L1Norm(Proposer):
    name = "l1norm"
    kind = "channels"
    about = "L1-norm filter pruning: predefined per-layer ratios, filters ranked by L1 norm (Li et al. 2017)"
    options = L1NormOptions
    allocation = PredefinedRatios(variants=variant_ratios)
    criterion = staticmethod(filter_norm)  # the L1 norm of each filter (p=1, the default)
    finetune = FineTune(0.25, imagenet_fraction=20 / 90,
                        source="Rethinking cifar/l1-norm-pruning/main_finetune.py: 40 epochs at lr 0.001; "
                               "imagenet/l1-norm-pruning/main_finetune.py: 20 epochs at lr 0.001")
    imagenet_scratch_b_cap = 2.0  # imagenet/l1-norm-pruning/main_B.py: 180 epochs when the FLOP ratio is >= 2

    def check_family(self, base: ArchSpec) -> None:
        sel = [g.name for g in get_family(base.family).groups(base) if g.kind != "conv"]
        if sel:
            raise ArchsearchError(f"{self.name} does not apply to the {base.family} family: it ranks filters, and "
                                  f"its channel selections ({sel[0]}, ...) have none (try slimming)")

    def prune(self, model: nn.Module, base: ArchSpec, settings: Settings) -> Pruned:
        keep = [k.numpy() for k in self.allocation.keep(self.criterion(model, base), settings)[0]]
        return channel_proposal(model, base, keep, layer_ratios=settings.layer_ratios)
