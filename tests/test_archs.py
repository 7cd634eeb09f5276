"""Every registered architecture: builds, trains a step, and its spec-computed counts agree
with counts taken on the built module."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.archs import all_archs, base_spec, build, scale_widths
from archsearch.counting import count
from archsearch.errors import ArchsearchError
from archsearch.spec import ArchSpec

from helpers import random_masks

ARCHS = [a for a in all_archs() if a.startswith("vgg")]  # the other families: test_families.py


def _variants(arch):
    dense = base_spec(arch, 10, width=0.25)
    pruned = ArchSpec(**{**_fields(dense), "widths": [max(1, w // 3) for w in dense.widths]})
    sparse = ArchSpec(**{**_fields(dense)})
    sparse.masks = random_masks(sparse, 0.4)
    return {"dense": dense, "pruned": pruned, "sparse": sparse}


def _fields(spec):
    return {k: getattr(spec, k) for k in ("family", "depth", "widths", "stages", "num_classes", "in_channels",
                                          "input_size", "base_widths", "masks")}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", ["dense", "pruned", "sparse"])
def test_forward_backward(arch, variant):
    spec = _variants(arch)[variant]
    model = build(spec)
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, 10)
    F.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert torch.isfinite(out).all()


def _built_in_forward(model):
    """The layer that the original code builds inside `forward` (so its counter never sees
    it): VGG's final average pool (`nn.AvgPool2d(2)(x)` in cifar/network-slimming/models/vgg.py)."""
    return model.pool if type(model).__name__ == "VGG" else None


def _measured(model, input_size=32):
    """Count params, MACs and the Rethinking code's FLOPs on the module with hooks."""
    macs, orig = [0], [0]

    def conv(m, i, o):
        hw = o[0].shape[-1] * o[0].shape[-2]
        kept = int((m.weight_mask != 0).sum()) if hasattr(m, "weight_mask") else m.weight.numel()
        macs[0] += kept * hw  # integer arithmetic: each kept weight is used once per output pixel
        orig[0] += 2 * kept * hw  # the weight-level counter: non-zero weights only

    def linear(m, i, o):
        macs[0] += m.weight.numel()
        orig[0] += 2 * m.weight.numel() + m.bias.numel()

    def bn(m, i, o):
        orig[0] += 2 * i[0][0].numel()

    def relu(m, i, o):
        orig[0] += i[0][0].numel()

    def pool(m, i, o):
        orig[0] += m.kernel_size ** 2 * o[0].numel()

    hooks = {nn.Conv2d: conv, nn.Linear: linear, nn.BatchNorm2d: bn, nn.ReLU: relu,
             nn.MaxPool2d: pool, nn.AvgPool2d: pool}
    for m in model.modules():
        if type(m) in hooks and m is not _built_in_forward(model):
            m.register_forward_hook(hooks[type(m)])
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, input_size, input_size))
    params = sum(p.numel() for p in model.parameters())
    nz = sum(int((m.weight_mask != 0).sum()) if hasattr(m, "weight_mask") else m.weight.numel()
             for m in model.modules() if isinstance(m, nn.Conv2d))
    dense_conv = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    return params, params - dense_conv + nz, macs[0], orig[0]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", ["dense", "pruned", "sparse"])
def test_counts_match_built_module(arch, variant):
    spec = _variants(arch)[variant]
    c = count(spec)
    params, params_nz, macs, orig = _measured(build(spec))
    assert c.params == params
    assert c.params_nonzero == params_nz
    assert c.macs_nonzero == macs
    assert c.original_flops == orig
    assert c.flops == 2 * c.macs_nonzero
    if variant != "sparse":
        assert c.params == c.params_nonzero and c.macs == c.macs_nonzero


def test_known_sizes():
    # VGG-19 on CIFAR: 20.04M params, 0.40 GMACs (Liu et al. 2017 Table 1; DESIGN.md)
    c = count(base_spec("vgg19", 10))
    assert c.params == 20_035_018
    assert round(c.macs / 1e9, 2) == 0.40
    assert count(base_spec("vgg16", 10)).params == 14_724_042


@pytest.mark.parametrize("arch", ARCHS)
def test_stage_layout(arch):
    spec = base_spec(arch, 100)
    assert spec.num_stages == 5
    assert [ws[0] for ws in spec.stage_widths()] == [64, 128, 256, 512, 512]
    assert len(spec.widths) == {"vgg11": 8, "vgg13": 10, "vgg16": 13, "vgg19": 16}[arch]


def test_width_multiplier_and_floor():
    assert scale_widths([64, 128, 3], 0.25) == [16, 32, 1]
    assert base_spec("vgg16", 10, width=0.01).widths == [1, 1, 1, 1, 3, 3, 3, 5, 5, 5, 5, 5, 5]
    with pytest.raises(ArchsearchError):
        scale_widths([64], 0)


@pytest.mark.parametrize("variant", ["dense", "pruned", "sparse"])
def test_json_round_trip(variant, tmp_path):
    spec = _variants("vgg16")[variant]
    spec.meta = {"origin": "test", "nested": {"a": [1, 2]}}
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec
    assert again.widths == spec.widths and again.stages == spec.stages
    if spec.masks is not None:
        assert again.masks.keys() == spec.masks.keys()
        assert all(np.array_equal(again.masks[k], spec.masks[k]) for k in spec.masks)
        assert again.density() == pytest.approx(spec.density())
    spec.save(tmp_path / "s.json")
    assert ArchSpec.load(tmp_path / "s.json") == spec
    # the built modules agree too
    torch.manual_seed(0)
    a = build(spec)
    torch.manual_seed(0)
    b = build(again)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("bad, msg", [
    ("{", "not valid JSON"),
    ("[]", "JSON object"),
    ('{"family": "vgg"}', "missing"),
    ('{"family": "vgg", "depth": 11, "widths": [1], "stages": [0], "num_classes": 10, "schema": 99}', "schema"),
    ('{"family": "vgg", "depth": 11, "widths": [0, 1], "stages": [0, 0], "num_classes": 10}', "greater than or equal to 1"),
    ('{"family": "vgg", "depth": 11, "widths": [2.5], "stages": [0], "num_classes": 10}', "whole number"),
    ('{"family": "vgg", "depth": 11, "widths": [1, 2], "stages": [0], "num_classes": 10}', "1 stages"),
    ('{"family": "vgg", "depth": 11, "widths": "64", "stages": [0], "num_classes": 10}', "must be a list"),
])
def test_malformed_spec_rejected(bad, msg):
    with pytest.raises(ArchsearchError, match=msg):
        ArchSpec.from_json(bad)


def test_builder_checks_family_layout():
    spec = base_spec("vgg11", 10)
    d = spec.to_dict()
    d["widths"] = d["widths"][:-1]
    d["stages"] = d["stages"][:-1]
    d["base_widths"] = d["groups"] = None
    with pytest.raises(ArchsearchError, match="channel groups"):
        build(ArchSpec.from_dict(d))
    d = spec.to_dict()
    d["family"], d["groups"] = "alexnet", None
    with pytest.raises(ArchsearchError, match="unknown architecture family"):
        build(ArchSpec.from_dict(d))
    sparse = _variants("vgg11")["sparse"]
    d = sparse.to_dict()
    first, second = list(d["masks"])[:2]
    d["masks"][first] = d["masks"][second]
    with pytest.raises(ArchsearchError, match=f"mask {first} has shape"):
        build(ArchSpec.from_dict(d))
    d = sparse.to_dict()
    d["masks"][first]["bits"] = "!!"
    with pytest.raises(ArchsearchError, match="malformed mask"):
        ArchSpec.from_dict(d)


def test_masks_zero_weights_at_build():
    spec = _variants("vgg11")["sparse"]
    model = build(spec)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv, mask in zip(convs, spec.masks.values()):
        w = conv.weight.detach().numpy()
        assert (w[~mask] == 0).all()
        assert (w[mask] != 0).mean() > 0.99


def test_bn_gamma_init():
    model = build(base_spec("vgg11", 10, width=0.25))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 0.5)  # slimming init (Liu et al. 2017 code)


def test_residual_nets_refuse_input_sizes_their_halvings_do_not_divide():
    """A stride-2 conv rounds a side up where the option-A shortcut and the counts round it
    down: at size 30 the ResNet's sum failed with a traceback and the PreResNet's counts were
    wrong. Such sizes are one line now; sizes divisible by 4 build and count."""
    from archsearch.counting import count
    from archsearch.errors import ArchsearchError

    for arch in ("resnet20", "preresnet56"):
        with pytest.raises(ArchsearchError, match="divisible by 4"):
            build(base_spec(arch, 10, width=0.25, input_size=30))
        s = base_spec(arch, 10, width=0.25, input_size=28)
        assert count(s).params == sum(p.numel() for p in build(s).parameters())
        build(s)(torch.zeros(2, 3, 28, 28))


def test_arch_names_have_no_leading_zero():
    from archsearch.archs import parse_arch
    from archsearch.errors import ArchsearchError

    with pytest.raises(ArchsearchError, match="unknown architecture 'vgg016'"):
        parse_arch("vgg016")
    assert parse_arch("vgg16")[1] == 16
