"""Torchvision models as families (`tv.NAME`), channel groups from Torch-Pruning's dependency graph.

Every classification model of the installed torchvision either builds, narrows, counts and runs
forward and backward, or is refused in one line before anything is built (`tv.REFUSED`): a
representative subset in the default selection, the rest marked slow."""

import gc
import re

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch.utils.flop_counter import FlopCounterMode

from archsearch.archs import build, get_family, parse_arch
from archsearch.archs.tv import make_model, refusal
from archsearch.cli import cli
from archsearch.counting import count
from archsearch.errors import ArchsearchError
from archsearch.names import parse_target, split_proposer

ALL = sorted(torchvision.models.list_models(module=torchvision.models))
# depthwise and squeeze-and-excitation CNNs; grouped convs (RegNet, whose builder computes widths
# with tensors); GoogLeNet's auxiliary classifiers; SqueezeNet's conv classifier; one model of each
# refused kind (channel shuffle, a ViT, ConvNeXt); a residual net: resnet18, checked by
# test_resnet18_groups_follow_the_residual_streams below
SUBSET = ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "regnet_x_400mf", "googlenet", "squeezenet1_1",
          "shufflenet_v2_x0_5", "vit_b_16", "convnext_tiny"]


def macs_of(model, size):
    model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return fc.get_total_flops() // 2


def check_model(name, size=32):
    fam, depth = parse_arch(f"tv.{name}")
    spec = fam.base(depth, 10, input_size=size)
    ref = make_model(name, 10)  # torchvision's own model, as archsearch asks for it (no auxiliary heads)
    n_ref = sum(p.numel() for p in ref.parameters())
    assert count(spec).params == n_ref
    assert count(spec).macs == macs_of(ref, size)
    # channel groups name their convs and carry a BN to rank them by, except a squeeze-and-excitation
    # block's squeeze or a net without BN (convs with a bias)
    gs = fam.groups(spec)
    assert len({g.name for g in gs}) == len(gs)
    assert all(g.bn or ref.get_submodule(g.name).bias is not None for g in gs)
    assert spec.stages == sorted(spec.stages) and spec.stages[0] == 0
    del ref
    gc.collect()  # the dependency graphs hold cycles: free each copy of a big model (regnet_y_128gf) at once
    model = build(spec)
    assert sum(p.numel() for p in model.parameters()) == n_ref
    with torch.no_grad():  # training mode, as the trainer runs it: one tensor of logits
        assert model(torch.randn(2, 3, size, size)).shape == (2, 10)
    del model
    gc.collect()
    # every group narrowed (at random widths): the net still runs forward and backward, so every
    # coupled conv, BN, depthwise conv, residual add, concatenation and the classifier agree on the widths
    rng = np.random.default_rng(0)
    narrow = spec.replace(widths=[int(rng.integers(1, w + 1)) for w in spec.widths])
    m = build(narrow)
    out = m(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    c = count(narrow)
    assert c.params == sum(p.numel() for p in m.parameters()) < n_ref
    assert c.macs == macs_of(m, size)
    return spec, gs


def supported_or_refused(name):
    """Either `check_model` at 32x32 or, for a model too big for that, at the side its error names
    (AlexNet: 63), or one line refusing it before anything is built."""
    why = refusal(name)
    if why is not None:
        def built(*a, **k):
            raise AssertionError(f"{name} was built before it was refused")

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(torchvision.models, "get_model", built)
            with pytest.raises(ArchsearchError) as e:
                parse_target(f"tv.{name}-c10")
        assert str(e.value) == f"tv.{name} is not supported: {why}"
        return None
    fam, depth = parse_arch(f"tv.{name}")
    try:
        fam.base(depth, 10, input_size=32)
    except ArchsearchError as e:  # too small for the model: one line naming the model and a side it runs on
        m = re.match(rf"tv\.{name} does not run on 32x32 images \(it runs on (\d+)x\1: use a dataset of larger "
                     r"images\): [^\n]+$", str(e))
        assert m, e
        return check_model(name, int(m.group(1)))
    return check_model(name, 32)


@pytest.mark.parametrize("name", SUBSET)
def test_torchvision_models_build_count_and_narrow_or_are_refused(name):
    supported_or_refused(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ALL if n not in SUBSET])
def test_every_torchvision_model_builds_count_and_narrows_or_is_refused(name):
    """With the subset above: the whole of torchvision's classification models."""
    supported_or_refused(name)


def test_refusals_name_their_reason():
    # a rule per architecture, not per name: every model of a refused kind is refused alike
    assert {n for n in ALL if refusal(n)} >= {"shufflenet_v2_x0_5", "shufflenet_v2_x2_0", "vit_h_14", "swin_v2_b",
                                              "maxvit_t", "convnext_large"}
    assert "channel shuffle" in refusal("shufflenet_v2_x0_5") and "attention" in refusal("vit_b_16")
    assert "non-square kernels" in refusal("inception_v3")
    assert refusal("resnet18") is None and refusal("googlenet") is None and refusal("nosuchnet") is None


@pytest.mark.parametrize("module,name,size,needle", [
    ("inception", "inception_v3", 75, r"has convs with non-square kernels \(1x3, 1x7, 3x1, 7x1\); archsearch's specs"),
    ("shufflenetv2", "shufflenet_v2_x0_5", 32,
     r"Torch-Pruning's dependency graph cannot trace this model \(ZeroDivisionError: .*\); archsearch cannot narrow it"),
])
def test_models_no_rule_names_yet_are_refused_when_first_traced(monkeypatch, module, name, size, needle):
    """A model REFUSED does not know (a later torchvision's) is still one line, at its first trace."""
    from archsearch.archs import tv

    monkeypatch.delitem(tv.REFUSED, module)
    with pytest.raises(ArchsearchError, match=rf"^tv\.{name}\b.*{needle}") as e:
        tv.TorchvisionFamily(name).base(0, 10, input_size=size)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("args,expect", [
    (["train", "tv.shufflenet_v2_x0_5-digits"], "tv.shufflenet_v2_x0_5 is not supported: ShuffleNet V2's channel shuffle"),
    (["train", "tv.vit_b_16-digits"], "tv.vit_b_16 is not supported: a vision transformer"),
    (["train", "tv.alexnet-digits"], "tv.alexnet does not run on 32x32 images (it runs on 63x63"),
    (["extract", "--from", "slimming-tv.swin_t-digits"], "tv.swin_t is not supported"),
])
def test_unsupported_models_fail_in_one_line(tmp_path, args, expect):
    r = CliRunner().invoke(cli, args + ["--preset", "tiny", "--workdir" if args[0] == "extract" else "--out",
                                        str(tmp_path / "r")], prog_name="archsearch")
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {expect}"), r.stderr
    assert not (tmp_path / "r").exists()


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
    with pytest.raises(ArchsearchError, match="tv.convnext_tiny is not supported: .*LayerNorm"):
        parse_arch("tv.convnext_tiny")


def test_train_a_torchvision_model_from_the_cli(tmp_path):
    r = CliRunner().invoke(cli, ["train", "tv.resnet18-digits", "--preset", "tiny", "--epochs", "1", "--width", "0.25",
                                 "--out", str(tmp_path / "r")], prog_name="archsearch")
    assert r.exit_code == 0, r.output
    assert "tv.resnet18-digits" in r.output
