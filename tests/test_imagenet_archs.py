"""The paper's ImageNet networks (archs/imagenet.py): `inresnet` (torchvision's ResNets) and
`invgg` (Network Slimming's ImageNet VGG-11, torchvision's vgg13/16/19_bn), and the names that
mean them (`vgg16-in`, `resnet50-in`).

Full-size nets are built on the meta device (shapes only: no memory, no init cost), so the
exact torchvision / original counts at 224 px are cheap; nets that run are built at width
0.125 and 64 px (VGG's last map is then 2x2: its classifier reads 4 inputs per channel)."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import reference_models as R
from archsearch.archs import NETS, all_archs, arch_names, base_spec, build, get_family, parse_arch
from archsearch.counting import count
from archsearch.errors import ArchsearchError
from archsearch.spec import ArchSpec

# torchvision's parameter count and its documented GFLOPS (= GMACs) at 224 px, 1000 classes
TORCHVISION = {
    "inresnet18": ("resnet18", 11_689_512, 1.81), "inresnet34": ("resnet34", 21_797_672, 3.66),
    "inresnet50": ("resnet50", 25_557_032, 4.09), "inresnet101": ("resnet101", 44_549_160, 7.80),
    "inresnet152": ("resnet152", 60_192_808, 11.51), "invgg13": ("vgg13_bn", 133_053_736, 11.31),
    "invgg16": ("vgg16_bn", 138_365_992, 15.47), "invgg19": ("vgg19_bn", 143_678_248, 19.63),
}
SMALL = ["inresnet18", "inresnet50", "invgg11", "invgg16"]  # one of each block kind / classifier


def _shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _meta_flops(model: nn.Module, size: int) -> int:
    """MACs per image by PyTorch's own counter (conv and linear layers), on shapes alone."""
    with FlopCounterMode(display=False) as fc:
        model.eval()(torch.empty(2, 3, size, size, device="meta"))
    return fc.get_total_flops() // 4  # 2 images, 2 FLOPs per MAC


def _measured(model: nn.Module, size: int) -> tuple[int, int, int]:
    """(MACs, non-zero MACs, original FLOPs) by forward hooks. The original FLOPs follow the
    paper's ImageNet counter (imagenet/*/compute_flops.py): hooks on leaf Conv2d (2 per non-zero
    weight and output pixel, + 1 per output for a bias), Linear, BatchNorm2d (not 1d), ReLU,
    MaxPool2d / AvgPool2d (k x k per output), per call. The paper's ResNet pools with
    nn.AvgPool2d(7, stride=1) where torchvision's is adaptive: counted as an AvgPool2d over the
    whole map."""
    macs, nz_macs, orig = [0], [0], [0]

    def conv(m, i, o):
        hw = o.shape[-1] * o.shape[-2]
        nz = int((m.weight != 0).sum())
        macs[0] += m.weight.numel() * hw
        nz_macs[0] += nz * hw
        orig[0] += (2 * nz + (m.out_channels if m.bias is not None else 0)) * hw

    def linear(m, i, o):
        macs[0] += m.weight.numel()
        nz_macs[0] += m.weight.numel()
        orig[0] += 2 * m.weight.numel() + m.bias.numel()

    def bn(m, i, o):
        orig[0] += 2 * i[0][0].numel()

    def relu(m, i, o):
        orig[0] += i[0][0].numel()

    def pool(m, i, o):
        k = i[0].shape[-1] if isinstance(m, nn.AdaptiveAvgPool2d) else m.kernel_size
        orig[0] += k * k * o[0].numel()

    hooks = [m.register_forward_hook(f) for m in model.modules() if not list(m.children())
             for t, f in ((nn.Conv2d, conv), (nn.Linear, linear), (nn.BatchNorm2d, bn), (nn.ReLU, relu),
                          ((nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d), pool)) if isinstance(m, t)]
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, size, size))
    for h in hooks:
        h.remove()
    return macs[0], nz_macs[0], orig[0]


def _pruned(spec: ArchSpec, seed: int, low: float = 0.2) -> ArchSpec:
    rng = np.random.default_rng(seed)
    return spec.replace(widths=[int(rng.integers(max(1, int(low * w)), w + 1)) for w in spec.widths], meta={})


# -- the exact networks ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", list(TORCHVISION))
def test_base_nets_are_torchvisions_at_224(arch):
    ref, params, gmacs = TORCHVISION[arch]
    spec = base_spec(arch, 1000, input_size=224)
    with torch.device("meta"):
        theirs, ours = getattr(torchvision.models, ref)(weights=None), build(spec)
        assert _shapes(ours) == _shapes(theirs)  # same modules by name: torchvision's weights load as they are
        assert count(spec).params == params == sum(p.numel() for p in theirs.parameters())
        assert round(count(spec).macs / 1e9, 2) == gmacs
        if arch in ("inresnet50", "invgg16"):  # the paper's two: the module's MACs by PyTorch's counter
            assert count(spec).macs == _meta_flops(ours, 224) == _meta_flops(theirs, 224)


def test_invgg11_is_network_slimmings_imagenet_vgg11_base_and_pruned():
    """imagenet/network-slimming/vgg.py: torchvision's vgg11_bn plus a BatchNorm1d after each hidden
    linear layer and no dropout; its prune.py cfg (conv widths, 'M', two hidden widths) builds the
    same net as our pruned spec."""
    base = base_spec("invgg11", 1000, input_size=224)
    with torch.device("meta"):
        vgg11_bn = sum(p.numel() for p in torchvision.models.vgg11_bn(weights=None).parameters())
        for s in (base, _pruned(base, 0), _pruned(base, 1, low=0.02)):
            cfg, it = [], iter(s.widths)
            for k, stage in enumerate(s.stage_widths()[:5]):
                cfg += [next(it) for _ in stage] + ["M"]
            cfg += list(it)
            theirs = R.SlimmingVGG(cfg)
            assert _shapes(build(s)) == _shapes(theirs), cfg
            assert count(s).params == sum(p.numel() for p in theirs.parameters())
    assert count(base).params == vgg11_bn + 2 * 2 * 4096 == 132_885_224
    assert [g.name for g in get_family("invgg").groups(base)][-2:] == ["classifier.0", "classifier.3"]
    assert base.widths[-2:] == [4096, 4096] and base.stages[-2:] == [5, 5]


def test_pruned_inresnet34_has_the_l1norm_codes_parameters():
    """imagenet/l1-norm-pruning/resnet.py builds Li et al.'s ResNet-34-A/B from one conv1 width per block."""
    base = base_spec("inresnet34", 1000, input_size=224)
    for s in (base, _pruned(base, 0), _pruned(base, 1, low=0.05)):
        with torch.device("meta"):
            theirs = R.ImageNetResNet((3, 4, 6, 3), cfg=s.widths)
            assert _shapes(build(s)) == _shapes(theirs)
        assert count(s).params == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize("arch", SMALL)
def test_counts_from_the_spec_match_the_module_base_pruned_sparse(arch):
    """Params, MACs (hooks; and PyTorch's FlopCounterMode for a pruned spec) and the original
    FLOPs from the spec alone equal those of the built module: base, pruned, pruned with blocks
    removed, and sparse."""
    torch.manual_seed(0)
    spec = base_spec(arch, 10, width=0.125, input_size=64)
    fam = get_family(spec.family)
    pruned = _pruned(spec, 1)
    blocks = fam.block_layout(spec.depth)
    if blocks:  # and every other removable block removed
        pruned = pruned.replace(blocks=[not b.removable or i % 2 == 0 for i, b in enumerate(blocks)])
        assert count(pruned).params < count(pruned.replace(blocks=None)).params
    rng = np.random.default_rng(0)
    sparse = spec.replace(masks={c.name: rng.random(c.shape) < 0.4 for c in fam.convs(spec)})
    for s in (spec, pruned, sparse):
        model, c = build(s), count(s)
        assert c.params == sum(p.numel() for p in model.parameters())
        assert (c.macs, c.macs_nonzero, c.original_flops) == _measured(model, 64)
    assert count(sparse).params - count(sparse).params_nonzero == sum(int((~m).sum()) for m in sparse.masks.values())
    assert count(sparse).macs_nonzero < count(sparse).macs
    with torch.device("meta"):
        assert count(pruned).macs == _meta_flops(build(pruned), 64)
    model = build(spec)
    y = model(torch.randn(2, 3, 64, 64))
    y.sum().backward()
    assert y.shape == (2, 10) and all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("arch", SMALL)
def test_narrow_equals_zeroing_the_dropped_channels_bn(arch):
    """Inherited weights: the narrowed net computes what the wide one does with the dropped
    channels' BN scale and shift at zero (invgg11: also its classifier's BatchNorm1d channels,
    and classifier.0 reads the flattened 2x2 map, 4 inputs per channel)."""
    from helpers import narrowed_at_random

    spec = base_spec(arch, 10, width=0.125, input_size=64)
    fam, model, keep, small_spec, state, small = narrowed_at_random(spec)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for g, k in zip(fam.groups(spec), keep):
            off = torch.from_numpy(np.flatnonzero(~k))
            modules[g.bn].weight[off] = 0.0
            modules[g.bn].bias[off] = 0.0
        x = torch.randn(3, 3, 64, 64)
        torch.testing.assert_close(small(x), model(x), atol=1e-4, rtol=1e-4)
    assert small_spec.widths == [int(k.sum()) for k in keep]
    assert count(small_spec).params == sum(p.numel() for p in small.parameters()) < count(spec).params


def test_block_flags_and_stages():
    fam = get_family("inresnet")
    # basic nets: layer1.0 keeps the stream's shape; bottleneck nets: it widens 64 -> 256
    assert [b.name for b in fam.block_layout(18) if not b.removable] == ["layer2.0", "layer3.0", "layer4.0"]
    assert [b.name for b in fam.block_layout(50) if not b.removable] == ["layer1.0", "layer2.0", "layer3.0",
                                                                         "layer4.0"]
    s50 = base_spec("inresnet50", 1000, input_size=224)
    assert s50.num_stages == 4 and len(s50.widths) == 2 * 16
    # the first block of a stage strides in its 3x3 conv: its 1x1 conv1 is still at the stage before
    gs = {g.name: g.stage for g in fam.groups(s50)}
    assert (gs["layer1.0.conv1"], gs["layer2.0.conv1"], gs["layer2.0.conv2"], gs["layer4.2.conv2"]) == (0, 0, 1, 3)
    assert [c.hw for c in fam.convs(s50)][:2] == [112, 56]
    assert base_spec("invgg16", 1000).num_stages == 5 and base_spec("invgg11", 1000).num_stages == 6
    with pytest.raises(ArchsearchError, match="cannot be removed"):
        build(s50.replace(blocks=[b.removable for b in fam.block_layout(50)]))
    with pytest.raises(ArchsearchError, match="too small"):
        build(base_spec("invgg16", 10, width=0.125, input_size=16))


def test_sparse_values_spread_over_conv_stages():
    """invgg11's classifier groups sit in a stage past its last conv: a sparsity pattern (one
    density per conv stage) maps onto its 5 conv stages one to one, not onto 6."""
    from helpers import make_pattern

    from archsearch.experiment import stage_summary
    from archsearch.generate import generate, pattern_stage_values

    t = base_spec("invgg11", 10, width=0.125)
    pat = make_pattern("sparsity")
    assert pattern_stage_values(pat, t)[1] == [0, 1, 2, 3, 4]
    assert len(pattern_stage_values(make_pattern("channels"), t)[1]) == 6
    budget = count(t).params - 0.5 * sum(int(np.prod(c.shape)) for c in get_family("invgg").convs(t))  # half the convs
    s = generate("transferred", t, budget, pattern=pat, sparse=True).spec
    summary = stage_summary(s)
    assert len(summary) == 5 and summary[0] > summary[4]  # the pattern keeps 0.6 of stage 0, 0.1 of stage 4
    assert len(stage_summary(generate("uniform", t, budget, sparse=True).spec)) == 5


# -- names -------------------------------------------------------------------------------------------
def test_a_dataset_s_nets_say_what_vgg_and_resnet_mean():
    def fam(name, nets="cifar"):
        f, depth = parse_arch(name, nets)
        return f.name, depth

    assert fam("resnet50") == ("resnet", 50)  # 6*8+2: a CIFAR ResNet depth
    assert fam("resnet50", "imagenet") == ("inresnet", 50)
    assert fam("vgg16") == ("vgg", 16) and fam("vgg16", "imagenet") == ("invgg", 16)
    assert fam("invgg16") == fam("invgg16", "imagenet") == ("invgg", 16)
    assert fam("inresnet18") == ("inresnet", 18) and fam("preresnet164", "imagenet") == ("preresnet", 164)
    assert base_spec("resnet50", 10, nets="imagenet").family == "inresnet"
    # the ImageNet families' own names are typed under either nets; and whatever a name means
    # under a dataset's nets, its spec.name (family + depth) means the same there: names round-trip
    for a in all_archs():
        if a.startswith("in"):
            assert all(f"{parse_arch(a, nets)[0].name}{parse_arch(a, nets)[1]}" == a for nets in NETS)
    for nets in NETS:
        for a in arch_names(nets):
            f, d = parse_arch(a, nets)
            assert parse_arch(f"{f.name}{d}", nets) == (f, d)
    assert {"vgg16", "resnet50", "invgg16", "preresnet164"} <= set(arch_names("imagenet"))
    assert "resnet56" not in arch_names("imagenet") and "resnet18" not in arch_names("cifar")
    assert {"resnet56", "vgg16", "inresnet50"} <= set(arch_names("cifar"))


@pytest.mark.parametrize("name,nets,msg", [
    ("resnet18", "cifar", "resnet has depths 6n\\+2 .*not 18; inresnet18 is torchvision's ResNet-18"),
    ("resnet56", "imagenet", "inresnet has depths 18, 34, 50, 101, 152, not 56; resnet56 is the CIFAR ResNet-56 "
                             "on datasets of cifar networks"),
    ("vgg12", "imagenet", "invgg has depths 11, 13, 16, 19, not 12$"),
    ("alexnet8", "imagenet", "unknown architecture 'alexnet8'; known \\(imagenet networks\\): resnet18, .*vgg11"),
    ("alexnet8", "cifar", "unknown architecture 'alexnet8'; known \\(cifar networks\\): vgg11, .*resnet20"),
    ("vgg16", "tpu", "unknown networks 'tpu'"),
])
def test_bad_names_are_one_line(name, nets, msg):
    with pytest.raises(ArchsearchError, match=msg) as e:
        parse_arch(name, nets)
    assert "\n" not in str(e.value)


@pytest.fixture
def imagenet_like(monkeypatch):
    """A dataset whose names mean the ImageNet networks (as `in` and folders registered so)."""
    from archsearch.data import DATASETS, DatasetInfo

    monkeypatch.setitem(DATASETS, "fakein", DatasetInfo("fakein", "fake", 7, lambda **k: None, input_size=64,
                                                        nets="imagenet"))


def test_targets_build_the_family_their_dataset_means(imagenet_like):
    from archsearch.names import parse_target
    from archsearch.propose import resolve_settings

    t = parse_target("resnet50-fakein")
    assert (t.family, t.spec_name, str(t)) == ("inresnet", "inresnet50", "resnet50-fakein")
    s = t.base_spec(0.25)
    assert (s.family, s.depth, s.num_classes, s.input_size, s.width) == ("inresnet", 50, 7, 64, 0.25)
    assert parse_target("resnet50-c10").base_spec().family == "resnet"
    assert parse_target("invgg16-c10").base_spec(0.125).family == "invgg"
    with pytest.raises(ArchsearchError, match="inresnet18 is torchvision's ResNet-18"):
        parse_target("resnet18-c10")
    base = resolve_settings("slimming-vgg11-fakein", width=0.125)[-1]  # the proposer's call site
    assert (base.family, base.input_size) == ("invgg", 64)
