"""Counts without a module (issue 30, item 5): `counting.count` reads each family's per-layer
terms from the spec (a `tv.*` family: from the table traced once, archs/tv_table.py) and must
equal a count taken on the built module, for every family, at random widths and masks."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from archsearch.archs import FAMILIES, build, get_family
from archsearch.counting import count

from helpers import random_masks

TV = ["tv.mobilenet_v2", "tv.resnet18", "tv.resnet50"]


def _module_counts(model: nn.Module, size: int) -> tuple[int, int, int, int]:
    """(params, non-zero params, MACs, non-zero MACs) of the built module: parameters as torch
    holds them, MACs from the conv and linear layers a forward runs (each kept weight of a conv
    is used once per output pixel, grouped convs included)."""
    macs, nz_macs = [0], [0]

    def conv(m, i, o):
        pixels = o.shape[-1] * o.shape[-2]
        kept = int((m.weight_mask != 0).sum()) if hasattr(m, "weight_mask") else m.weight.numel()
        macs[0] += m.weight.numel() * pixels
        nz_macs[0] += kept * pixels

    def linear(m, i, o):
        macs[0] += m.weight.numel()
        nz_macs[0] += m.weight.numel()

    handles = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    dropped = sum(int((m.weight_mask == 0).sum()) for m in model.modules() if hasattr(m, "weight_mask"))
    return params, params - dropped, macs[0], nz_macs[0]


def _base(family: str, num_classes: int = 10):
    """The family's smallest listed net at a quarter width (ImageNet families at 64 px)."""
    fam = get_family(family)
    size = 64 if fam.nets == "imagenet" else 32
    return fam.base(min(fam.depths), num_classes, 0.25 if not family.startswith("tv.") else 1.0, input_size=size)


def _variants(spec, seed: int):
    """The net itself, two random narrowings (every group between 1 channel and its width), and
    a narrowing with random masks."""
    rng = np.random.default_rng(seed)
    out = [spec]
    for _ in range(2):
        out.append(spec.replace(widths=[int(rng.integers(1, w + 1)) for w in spec.widths]))
    sparse = out[-1].replace()
    sparse.masks = random_masks(sparse, 0.3, seed)
    return out + [sparse]


@pytest.mark.parametrize("family", [f for f in FAMILIES] + TV)
def test_count_equals_the_built_module(family):
    spec = _base(family, num_classes=100 if family.startswith("tv.") else 10)
    for s in _variants(spec, seed=len(family)):
        c = count(s)
        assert (c.params, c.params_nonzero, c.macs, c.macs_nonzero) == _module_counts(build(s), s.input_size), s.widths


@pytest.mark.parametrize("name", [n.removeprefix("tv.") for n in TV] + ["densenet121", "googlenet", "squeezenet1_1"])
def test_tv_table_equals_the_traced_module_layer_by_layer(name):
    """Every counted layer (convs, BNs, linear layers, activations, pools: the `original` FLOPs
    too) of the table equals the layer traced on the narrowed module, for another class count
    too; concatenations (DenseNet, GoogLeNet, SqueezeNet) sum their inputs' groups."""
    from archsearch.archs import tv

    fam = get_family(f"tv.{name}")
    spec = fam.base(0, 10)
    assert tv._layout(name, 32).table is not None
    rng = np.random.default_rng(1)
    for classes in (10, 100):
        widths = tuple(int(rng.integers(1, w + 1)) for w in spec.widths)
        fast = [(layer.name, layer.op) for layer in tv._layers(name, 32, classes, widths)]
        traced = [(layer.name, layer.op) for layer in tv.traced_layers(name, 32, classes, widths)]
        assert fast == traced


def test_tv_widths_out_of_range_are_one_line():
    from archsearch.errors import ArchsearchError

    spec = get_family("tv.resnet18").base(0, 10)
    bad = spec.replace(widths=[spec.widths[0] + 1] + spec.widths[1:])
    with pytest.raises(ArchsearchError, match="out of range"):
        count(bad)


def test_transfer_onto_a_native_family_imports_no_torchvision(tmp_path):
    """`transfer` onto a non-tv family never imports torchvision (1.7 s, and its ops pull in
    torch's compiler): only what a command uses is imported."""
    code = ("import sys; from click.testing import CliRunner; from archsearch.cli import cli; "
            f"r = CliRunner().invoke(cli, ['transfer', '--from', 'slimming-vgg16-c10', '--to', 'vgg11-c10', "
            f"'--width', '0.25', '--budget', '50K', '--out', {str(tmp_path / 'out')!r}]); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torchvision', 'torch_pruning') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip().splitlines()[-1] == "[]", p.stdout + p.stderr
