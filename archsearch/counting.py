"""Parameters, MACs and FLOPs from an ArchSpec alone (no module is built).

`count` is the one rule: sums of per-layer terms over the family's `ops(spec)`, each layer's
sizes given its channel groups' widths. The budget solver calls it for every candidate, so no
family builds a module for it: the paper's families read their layers from the spec, and a
torchvision family (`tv.*`) from a per-layer table traced once per process (archs/tv_table.py).
tests/test_fast_count.py checks every family against counts taken on the built module.

Conventions, stated wherever numbers are printed:
- `macs`: multiply-accumulates of conv and linear layers, per image, forward pass.
  FLOPs = 2 x MACs.
- `original`: the FLOP counter of the "Rethinking" code (compute_flops.py, from
  simochen/model-tools), which Scratch-B budgets in the paper used: conv and linear as
  2 x MACs plus one op per bias, plus 2 ops per BN element, 1 per ReLU element and k*k
  per pooling output, over the layers that are modules (VGG's final average pool is built
  inside `forward` there and never counted). A conv with a bias (the ImageNet VGGs) adds
  one op per output element, as that counter's `bias_ops`. A sparse net's convs count their
  non-zero weights only, as the paper's weight-level counter does
  (cifar/weight-level/count_flops.py: `(weight != 0).sum() * 2` per output pixel).
  The ImageNet networks follow the same counter (`imagenet/*/compute_flops.py`), which hooks
  BatchNorm2d only: the BatchNorm1d layers of the ImageNet VGG-11's classifier are not
  counted. The ImageNet ResNets' final pool counts as the paper's code builds it,
  `nn.AvgPool2d(7, stride=1)`: k*k per output with k the last map's side (7 at 224 px),
  though the module is torchvision's adaptive pool, the same function (`archs/imagenet.py`).
- A sparse (masked) net counts its conv weights and conv MACs as the non-zero weights
  only (`params_nonzero`, `macs_nonzero`, and `original_flops`); the dense figures are kept
  beside them. Scratch-B budgets under either convention are therefore non-zero budgets.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from .archs import get_family
from .errors import ArchsearchError
from .spec import ArchSpec

CONVENTIONS = ("macs", "original")


@dataclass(frozen=True)
class Counts:
    params: int           # all trainable parameters of the dense module
    params_nonzero: int   # the same with masked conv weights left out
    macs: int             # conv + linear multiply-accumulates per image (dense)
    macs_nonzero: int     # the same counting only non-zero conv weights
    original_flops: int   # the "Rethinking" code's FLOP count per image

    @property
    def flops(self) -> int:
        """FLOPs = 2 x MACs (non-zero MACs for a sparse net)."""
        return 2 * self.macs_nonzero

    def cost(self, convention: str = "macs") -> int:
        """The compute figure used for Scratch-B ratios under `convention`."""
        if convention == "macs":
            return self.macs_nonzero
        if convention == "original":
            return self.original_flops
        raise ValueError(f"unknown counting convention {convention!r}; use one of {CONVENTIONS}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flops"] = self.flops
        d["flops_note"] = "FLOPs = 2 x MACs; MACs count conv and linear layers per image, forward"
        return d


def count(spec: ArchSpec) -> Counts:
    params = nz_params = macs = nz_macs = orig = 0
    for op in get_family(spec.family).ops(spec):
        n_out = op.cout * op.hw * op.hw
        o = 0  # this op's share of the original count
        if op.kind == "conv":
            w = op.cin * op.cout * op.k * op.k
            nz = w if op.nonzero is None else op.nonzero
            b = op.cout if op.bias else 0
            params += w + b
            nz_params += nz + b
            macs += w * op.hw * op.hw
            nz_macs += nz * op.hw * op.hw
            o = 2 * nz * op.hw * op.hw + (n_out if op.bias else 0)  # one add per output for a bias
        elif op.kind == "linear":
            w = op.cin * op.cout + op.cout
            params += w
            nz_params += w
            macs += op.cin * op.cout
            nz_macs += op.cin * op.cout
            o = 2 * op.cin * op.cout + op.cout
        elif op.kind == "bn":
            params += 2 * op.cout
            nz_params += 2 * op.cout
            o = 2 * n_out
        elif op.kind == "relu":
            o = n_out
        elif op.kind in ("maxpool", "avgpool"):
            o = op.k * op.k * n_out
        else:
            raise ValueError(f"unknown op kind {op.kind}")
        orig += o if op.in_original else 0
    return Counts(params, nz_params, macs, nz_macs, orig)


def original_params(spec: ArchSpec) -> int:
    """The parameter count the original scripts report for `spec`: archsearch's
    (`count(spec).params`) plus one entry per stream channel of every channel-selection layer.
    cifar/network-slimming/models/channel_selection.py registers its `indexes` (one float per
    channel of the stream it selects from, pruned or not) as an `nn.Parameter`, and
    resprune.py / denseprune.py (`sum(param.nelement() for param in newmodel.parameters())`,
    written to prune.txt) and compute_flops.py count every parameter; archsearch keeps the
    selection as an index buffer, which trains nothing. So PreResNet-164 (CIFAR-10) is
    1,711,338 there and 1,703,258 here, DenseNet-40 1,068,658 and 1,059,298; a family without
    selection layers (VGG, ResNet) counts the same. Quote this figure only beside a paper
    number that the original scripts produced (e.g. Network Slimming's README tables)."""
    fam = get_family(spec.family)
    return count(spec).params + sum(g.stream for g in fam.groups(spec) if g.kind == "select")


# -- memory: what a network costs to hold --------------------------------------------------------
def memory_needed(spec: ArchSpec, batch_size: int) -> int:
    """Bytes that training `spec` at `batch_size` needs at least (fp32): weights, gradients,
    momentum and masks (4 x params), plus every layer's output kept for the backward pass
    and its gradient (2 x activations per image x batch). A lower bound: the point is to
    refuse, before allocating, what cannot fit at all."""
    fam = get_family(spec.family)
    fam.check(spec)
    acts = sum(op.cout * op.hw * op.hw for op in fam.ops(spec))
    return 4 * (4 * count(spec).params + 2 * acts * max(1, batch_size))


def memory_available(dev: torch.device) -> int | None:
    """Free bytes on `dev` (CUDA: free device memory; CPU: MemAvailable), or None if unknown."""
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(spec: ArchSpec, batch_size: int, dev: torch.device) -> None:
    """One line, before anything is allocated, when `spec` cannot fit on `dev`."""
    need, free = memory_needed(spec, batch_size), memory_available(dev)
    if free is not None and need > free:
        raise ArchsearchError(f"{spec.name} (input {spec.input_size}px, {fmt_count(count(spec).params)} params) needs "
                              f"at least {need / 2 ** 30:.1f} GiB to train at batch {batch_size}; {dev} has "
                              f"{free / 2 ** 30:.1f} GiB free: use a smaller width, input size or batch")


def check_mask_memory(spec: ArchSpec) -> None:
    """Generating masks for `spec` holds a few bools per dense conv weight: refuse what cannot fit."""
    need, free = 4 * count(spec).params, memory_available(torch.device("cpu"))
    if free is not None and need > free:
        raise ArchsearchError(f"masks for {spec.name} ({fmt_count(count(spec).params)} weights) need about "
                              f"{need / 2 ** 30:.1f} GiB; this machine has {free / 2 ** 30:.1f} GiB free: "
                              "use a smaller width")


def fmt_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"
