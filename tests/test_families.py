"""Families in the channel-group model: VGG, ResNet, PreResNet, DenseNet.

What every registered family must do (build, run, count, narrow, save and load its specs,
generators at a budget) is checked for each one by test_registries.py. Here each family is
checked against the module it builds (parameters; MACs with PyTorch's own
FlopCounterMode; the original FLOP counter's rules by hooks), against the paper's own model
definitions (tests/reference_models.py) for base and pruned configurations, and for
inherited weights (slicing equals zeroing the dropped channels' BN)."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import reference_models as R
from archsearch.archs import Select, base_spec, build, get_family, parse_arch
from archsearch.counting import count
from archsearch.errors import ArchsearchError
from archsearch.spec import ArchSpec

DEEP = {"resnet110", "preresnet110", "preresnet164", "densenet100"}  # slow on 2 cores: `pytest -m slow`
ARCHS = [pytest.param(a, marks=pytest.mark.slow) if a in DEEP else a
         for a in ["vgg11", "vgg16", "vgg19", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "preresnet56",
                   "preresnet110", "preresnet164", "densenet40", "densenet100"]]
SMALL = ["vgg11", "resnet20", "resnet56", "preresnet56", "densenet40"]


def _random_widths(spec: ArchSpec, seed: int, low: float = 0.2) -> ArchSpec:
    """A 'pruned' spec: every group at a random width in [low x base, base], random selections."""
    rng = np.random.default_rng(seed)
    fam = get_family(spec.family)
    ws, sel = [], {}
    for g, w in zip(fam.groups(spec), spec.widths):
        nw = int(rng.integers(max(1, int(low * w)), w + 1))
        ws.append(nw)
        if g.kind == "select" and rng.random() < 0.5:
            sel[g.name] = sorted(rng.choice(g.stream, nw, replace=False).tolist())
    return spec.replace(widths=ws, selected=sel or None, meta={})


def _original_flops(model: nn.Module, spec: ArchSpec) -> int:
    """The FLOP counter of the paper's compute_flops.py (simochen/model-tools): forward hooks
    on leaf Conv2d / Linear / BatchNorm2d / ReLU / MaxPool2d / AvgPool2d, per call."""
    total = [0]

    def conv(m, i, o):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels / m.groups)
        total[0] += (k * 2 + (1 if m.bias is not None else 0)) * o[0].numel()

    def linear(m, i, o):
        total[0] += m.weight.numel() * 2 + m.bias.numel()

    def bn(m, i, o):
        total[0] += i[0].nelement() * 2

    def relu(m, i, o):
        total[0] += i[0].nelement()

    def pool(m, i, o):
        total[0] += m.kernel_size * m.kernel_size * o[0].numel()

    hooks = []
    for m in model.modules():
        if list(m.children()) or (type(model).__name__ == "VGG" and m is model.pool):
            continue  # the original VGG builds its final pool inside forward: never counted
        for t, f in ((nn.Conv2d, conv), (nn.Linear, linear), (nn.BatchNorm2d, bn), (nn.ReLU, relu),
                     ((nn.MaxPool2d, nn.AvgPool2d), pool)):
            if isinstance(m, t):
                hooks.append(m.register_forward_hook(f))
    with torch.no_grad():
        model.eval()(torch.rand(1, spec.in_channels, spec.input_size, spec.input_size))
    for h in hooks:
        h.remove()
    return int(round(total[0]))


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_backward_and_counts_match_the_module(arch):
    torch.manual_seed(0)
    spec = base_spec(arch, 10, width=0.25)
    for s in (spec, _random_widths(spec, 1)):
        model = build(s)
        x = torch.randn(2, 3, 32, 32)
        with FlopCounterMode(display=False) as fc:
            y = model(x)
        y.sum().backward()
        assert y.shape == (2, 10) and all(p.grad is not None for p in model.parameters())
        c = count(s)
        assert c.params == sum(p.numel() for p in model.parameters())
        assert 2 * c.macs * 2 == fc.get_total_flops()  # 2 images, 2 FLOPs per MAC
        assert c.original_flops == _original_flops(build(s), s)


@pytest.mark.parametrize("arch,width,expect", [("vgg19", 1.0, 20_040_000), ("resnet56", 1.0, 850_000),
                                               ("resnet110", 1.0, 1_730_000), ("preresnet164", 1.0, 1_700_000),
                                               ("densenet40", 1.0, 1_060_000)])
def test_base_params_are_the_papers(arch, width, expect):
    """DESIGN.md's reference counts (CIFAR-10, without the selection index vectors)."""
    assert count(base_spec(arch, 10, width)).params == pytest.approx(expect, rel=0.006)


def _reference(arch: str, cfg: list[int], num_classes: int) -> nn.Module:
    fam, depth = parse_arch(arch)
    return {"resnet": R.ResNet, "preresnet": R.PreResNet, "densenet": R.DenseNet}[fam.name](
        depth, num_classes=num_classes, cfg=cfg)


@pytest.mark.parametrize("arch", ["resnet20", "resnet56", "resnet110", "preresnet56", "preresnet164", "densenet40"])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_params_equal_the_original_code_for_base_and_pruned_cfgs(arch, num_classes):
    base = base_spec(arch, num_classes)
    for s in (base, _random_widths(base, 0), _random_widths(base, 1, low=0.05)):
        ours = count(s).params
        theirs, idx = R.params(_reference(arch, s.widths, num_classes))
        assert ours == theirs, (arch, s.widths[:6])
        assert ours == sum(p.numel() for p in build(s).parameters())
        if arch.startswith(("pre", "dense")):  # the original also counts its index vectors
            assert idx == sum(g.stream for g in get_family(s.family).groups(s) if g.kind == "select")


def test_densenet40_base_groups_are_the_original_default_cfg():
    n = 12
    cfg = []
    start = 24
    for _ in range(3):
        cfg.append([start + 12 * i for i in range(n + 1)])
        start += 12 * 12
    assert base_spec("densenet40", 10).widths == [c for sub in cfg for c in sub]


@pytest.mark.parametrize("arch", SMALL + [pytest.param("preresnet164", marks=pytest.mark.slow)])
def test_narrow_equals_zeroing_the_dropped_channels_bn(arch):
    from helpers import narrowed_at_random

    spec = base_spec(arch, 10, width=0.5)
    fam, model, keep, small_spec, state, small = narrowed_at_random(spec)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for g, k in zip(fam.groups(spec), keep):
            bn = modules[g.bn]
            idx = fam.selection(spec, g) if g.kind == "select" else list(range(len(k)))
            off = torch.tensor([i for i, kk in zip(idx, k) if not kk], dtype=torch.long)
            bn.weight[off] = 0.0
            bn.bias[off] = 0.0
        x = torch.randn(3, 3, 32, 32)
        torch.testing.assert_close(small(x), model(x), atol=1e-4, rtol=1e-4)
    # the narrowed spec round-trips through JSON and builds the same net
    again = ArchSpec.from_json(small_spec.to_json())
    assert again == small_spec
    build(again).load_state_dict(state)


def test_narrow_twice_keeps_the_stream_channels_it_selected():
    spec = base_spec("preresnet56", 10, width=0.25)
    fam = get_family("preresnet")
    model = build(spec)
    keep = [np.arange(w) % 2 == 0 for w in spec.widths]
    s1, st1 = fam.narrow(model, spec, keep)
    m1 = build(s1)
    m1.load_state_dict(st1)
    keep2 = [np.arange(w) % 2 == 0 for w in s1.widths]
    s2, _ = fam.narrow(m1, s1, keep2)
    g = fam.groups(spec)[0]
    assert s2.selected[g.name] == list(range(0, g.stream, 4))


@pytest.mark.parametrize("arch", SMALL)
def test_sparse_masks_by_conv_name_zero_weights_and_count(arch):
    spec = base_spec(arch, 10, width=0.25)
    convs = get_family(spec.family).convs(spec)
    rng = np.random.default_rng(0)
    masks = {c.name: rng.random(c.shape) < 0.3 for c in convs}
    for m in masks.values():
        m.flat[0] = True
    s = spec.replace(masks=masks)
    model = build(s)
    mods = dict(model.named_modules())
    for name, m in masks.items():
        assert (mods[name].weight.detach().numpy()[~m] == 0).all()
    c = count(s)
    dense_conv = sum(int(np.prod(cv.shape)) for cv in convs)
    assert c.params - c.params_nonzero == dense_conv - sum(int(m.sum()) for m in masks.values())
    again = ArchSpec.from_json(s.to_json())
    assert again.masks.keys() == masks.keys() and all(np.array_equal(again.masks[k], masks[k]) for k in masks)


def test_masks_for_unknown_or_missing_convs_are_refused():
    spec = base_spec("resnet20", 10, width=0.25)
    convs = get_family("resnet").convs(spec)
    masks = {c.name: np.ones(c.shape, bool) for c in convs}
    with pytest.raises(ArchsearchError, match="missing"):
        build(spec.replace(masks={k: v for k, v in list(masks.items())[1:]}))
    with pytest.raises(ArchsearchError, match="not conv"):
        build(spec.replace(masks={**masks, "layer9.0.conv1": np.ones((1, 1, 3, 3), bool)}))
    with pytest.raises(ArchsearchError, match="shape"):
        build(spec.replace(masks={**masks, "conv1": np.ones((1, 1, 3, 3), bool)}))


@pytest.mark.parametrize("arch", ["resnet20", "preresnet56"])
def test_block_keep_flags_remove_blocks(arch):
    spec = base_spec(arch, 10, width=0.25)
    fam = get_family(spec.family)
    blocks = fam.block_layout(spec.depth)
    flags = [not b.removable or i % 2 == 0 for i, b in enumerate(blocks)]
    assert not all(flags)
    s = spec.replace(blocks=flags)
    model = build(s)
    assert count(s).params == sum(p.numel() for p in model.parameters()) < count(spec).params
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert ArchSpec.from_json(s.to_json()).blocks == flags
    fixed = [b.removable for b in blocks]  # drop exactly the blocks that cannot go
    with pytest.raises(ArchsearchError, match="cannot be removed"):
        build(spec.replace(blocks=fixed))


def test_selection_checks():
    spec = base_spec("densenet40", 10, width=0.25)
    g = get_family("densenet").groups(spec)[3]
    ws = list(spec.widths)
    ws[3] = g.stream + 1
    with pytest.raises(ArchsearchError, match="selects"):
        build(spec.replace(widths=ws))
    ws[3] = 2
    for bad in ([0, 0], [0, g.stream], [1]):
        with pytest.raises(ArchsearchError, match="distinct channels"):
            build(spec.replace(widths=ws, selected={g.name: bad}))
    with pytest.raises(ArchsearchError, match="no selection group"):
        build(spec.replace(selected={"conv1": [0]}))
    m = build(spec.replace(widths=ws, selected={g.name: [1, 5]}))
    sel = dict(m.named_modules())[g.name]
    assert isinstance(sel, Select) and sel.indexes.tolist() == [1, 5]


def test_depth_rules_and_unknown_depths():
    assert parse_arch("resnet1202")[1] == 1202 and parse_arch("densenet190")[1] == 190
    for bad, msg in (("resnet21", "6n\\+2"), ("preresnet57", "9n\\+2"), ("densenet41", "3n\\+4"), ("vgg15", "depths")):
        with pytest.raises(ArchsearchError, match=msg):
            parse_arch(bad)


def test_schema1_vgg_spec_still_loads_with_its_masks(tmp_path):
    from archsearch.spec import encode_mask

    spec = base_spec("vgg11", 10, width=0.125)
    convs = get_family("vgg").convs(spec)
    masks = [np.random.default_rng(i).random(c.shape) < 0.5 for i, c in enumerate(convs)]
    old = {"schema": 1, "family": "vgg", "depth": 11, "num_classes": 10, "in_channels": 3, "input_size": 32,
           "widths": spec.widths, "stages": spec.stages, "base_widths": spec.widths,
           "density": [float(m.mean()) for m in masks], "masks": [encode_mask(m) for m in masks],
           "meta": {"origin": "base", "width": 0.125}}
    f = tmp_path / "old.json"
    f.write_text(json.dumps(old))
    s = ArchSpec.load(f)
    assert s.width == 0.125 and list(s.masks) == [c.name for c in convs]
    assert all(np.array_equal(s.masks[c.name], m) for c, m in zip(convs, masks))
    assert s.to_dict()["schema"] == 2 and ArchSpec.from_json(s.to_json()) == s
    assert s.identity() == old  # run fingerprints hash this: runs made before schema 2 still resume


def test_spec_with_the_wrong_groups_is_one_line(tmp_path):
    d = base_spec("resnet20", 10).to_dict()
    d["groups"] = list(reversed(d["groups"]))
    with pytest.raises(ArchsearchError, match="do not match"):
        ArchSpec.from_dict(d)


# -- generators over channel groups ------------------------------------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402

from archsearch.generate import generate  # noqa: E402
from helpers import make_pattern  # noqa: E402

GEN_ARCHS = ["vgg11", "resnet20", "resnet56", "preresnet56", "densenet40"]


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(arch=st.sampled_from(GEN_ARCHS), frac=st.floats(0.03, 0.95), round_to=st.sampled_from([1, 2, 8]),
       gen=st.sampled_from(["transferred", "uniform", "random"]), sparse=st.booleans(),
       width=st.sampled_from([0.25, 0.5, 1.0]), seed=st.integers(0, 5))
def test_generated_nets_keep_their_groups_budget_and_every_conv(arch, frac, round_to, gen, sparse, width, seed):
    """Whatever the family, budget and rounding: the spec fits its family (no group breaks,
    no selection exceeds its stream), guided/transferred nets keep one width per stage and
    kind, uniform keeps equal groups equal, the budget is met within 1% or refused in one
    line, and no conv is left with 0 weights."""
    t = base_spec(arch, 10, width=width)
    fam = get_family(t.family)
    budget = frac * count(t).params
    pattern = make_pattern("sparsity" if sparse else "channels")
    try:
        s = generate(gen, t, budget, pattern=pattern, sparse=sparse, round_to=1 if sparse else round_to, seed=seed)
    except ArchsearchError as e:
        assert "cannot match" in str(e) or "below the smallest" in str(e), str(e)
        return
    fam.check(s.spec)
    assert abs(count(s.spec).params_nonzero - budget) / budget <= 0.01
    if sparse:
        assert all(m.any() for m in s.spec.masks.values())
        assert set(s.spec.masks) == {c.name for c in fam.convs(t)}
        return
    groups = fam.groups(t)
    for g, w, b in zip(groups, s.spec.widths, t.widths):
        assert 1 <= w <= b and (g.stream is None or w <= g.stream)
    if gen in ("transferred", "uniform"):  # equal groups (stage, base width) keep one width
        seen = {}
        for g, w, b in zip(groups, s.spec.widths, t.widths):
            key = (g.stage, b) if gen == "transferred" else b
            assert seen.setdefault(key, w) == w
    build(s.spec)
