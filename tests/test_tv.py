"""Torchvision models as families (`tv.NAME`), channel groups from Torch-Pruning's dependency graph."""

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from archsearch.archs import build, get_family, parse_arch
from archsearch.cli import cli
from archsearch.counting import count
from archsearch.errors import ArchsearchError
from archsearch.names import parse_target, split_proposer

FAST = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"]
SLOW = ["resnet50", "regnet_x_400mf"]


def macs_of(model, size):
    model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return fc.get_total_flops() // 2


def check_model(name, size=32):
    fam, depth = parse_arch(f"tv.{name}")
    spec = fam.base(depth, 10, input_size=size)
    ref = torchvision.models.get_model(name, weights=None, num_classes=10)
    model = build(spec)
    n_ref = sum(p.numel() for p in ref.parameters())
    assert sum(p.numel() for p in model.parameters()) == n_ref == count(spec).params
    assert count(spec).macs == macs_of(ref, size)
    # every group narrowed (at random widths): the net still runs forward and backward, so every
    # coupled conv, BN, depthwise conv, residual add and the classifier agree on the widths
    rng = np.random.default_rng(0)
    narrow = spec.replace(widths=[int(rng.integers(1, w + 1)) for w in spec.widths])
    m = build(narrow)
    out = m(torch.randn(2, 3, size, size))
    out.sum().backward()
    assert out.shape == (2, 10)
    c = count(narrow)
    assert c.params == sum(p.numel() for p in m.parameters()) < n_ref
    assert c.macs == macs_of(m, size)
    # channel groups name their convs and carry a BN to rank them by, except a squeeze-and-excitation
    # block's squeeze (a conv with a bias and no BN)
    gs = fam.groups(spec)
    assert len({g.name for g in gs}) == len(gs)
    assert all(g.bn or ref.get_submodule(g.name).bias is not None for g in gs)
    assert spec.stages == sorted(spec.stages) and spec.stages[0] == 0
    return spec, gs


@pytest.mark.parametrize("name", FAST)
def test_torchvision_models_build_count_and_narrow(name):
    check_model(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_more_torchvision_models(name):
    check_model(name)


def test_resnet18_groups_follow_the_residual_streams():
    spec, gs = check_model("resnet18")
    # 4 residual streams (the stem joins the first) + 8 blocks' inner convs, one stage per stream
    assert len(gs) == 12 and sorted(set(spec.stages)) == [0, 1, 2, 3]
    wires = get_family(spec.family).wires(spec)
    stream = wires["layer1.0.conv2"][0]
    assert wires["conv1"][0] == stream == wires["layer1.1.conv2"][0] == wires["layer2.0.conv1"][1]
    assert wires["fc"] == (None, wires["layer4.1.conv2"][0])  # the classifier reads the last stream; classes fixed
    inner = wires["layer1.0.conv1"][0]
    assert inner != stream and wires["layer1.0.conv2"][1] == inner


def test_narrow_inherits_weights_into_the_narrower_net():
    fam, _ = parse_arch("tv.mobilenet_v2")
    spec = fam.base(0, 10)
    torch.manual_seed(0)
    model = build(spec)
    keep = [np.arange(w) % 3 != 1 if w > 2 else np.ones(w, bool) for w in spec.widths]
    new, state = fam.narrow(model, spec, keep)
    small = build(new)
    small.load_state_dict(state)  # every inherited tensor has the narrower net's shape
    assert new.widths == [int(k.sum()) for k in keep]
    small(torch.randn(2, 3, 32, 32))


def test_names():
    t = parse_target("tv.mobilenet_v2-c10")
    assert (t.family, t.depth, t.num_classes) == ("tv.mobilenet_v2", 0, 10)
    method, target, variant = split_proposer("slimming-tv.resnet18-digits")
    assert (method, target.family, variant) == ("slimming", "tv.resnet18", None)
    assert split_proposer("l1norm-tv.resnet18-c10.A")[2] == "A"
    assert get_family("tv.resnet18").base(0, 10).name == "tv.resnet18"
    with pytest.raises(ArchsearchError, match="unknown torchvision model 'nosuchnet'"):
        parse_target("tv.nosuchnet-c10")
    with pytest.raises(ArchsearchError, match="cannot count or narrow yet: .*LayerNorm"):
        parse_arch("tv.convnext_tiny")[0].base(0, 10)


def test_train_a_torchvision_model_from_the_cli(tmp_path):
    r = CliRunner().invoke(cli, ["train", "tv.resnet18-digits", "--preset", "tiny", "--epochs", "1", "--width", "0.25",
                                 "--out", str(tmp_path / "r")], prog_name="archsearch")
    assert r.exit_code == 0, r.output
    assert "tv.resnet18-digits" in r.output
