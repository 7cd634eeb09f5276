"""Proposers on any network (issue 15): our importance criteria against Torch-Pruning's on the
same weights (the families we have and torchvision models), the same global threshold keeping
the same channels as Torch-Pruning's own global pruner, and the four data-free proposers
running on torchvision models end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from archsearch.archs import base_spec, build, get_family
from archsearch.archs.tv import tv_family
from archsearch.propose.importance import bn_scale, filter_norm, lamp_scores
from archsearch.propose.slimming import slimming_keep

tp = pytest.importorskip("torch_pruning")

# (arch as the family registry names it, width): the families we have and torchvision models
NETS = [("vgg11", 0.25), ("resnet20", 0.5), ("tv.resnet18", 0.25), ("tv.mobilenet_v2", 0.25)]


def _spec(arch: str, width: float):
    if arch.startswith("tv."):
        return tv_family(arch[3:]).base(0, 10, width, input_size=32)
    return base_spec(arch, 10, width)


def _randomised(spec, seed: int = 0) -> nn.Module:
    """The built net with every BN scale and conv weight drawn at random (distinct values: no
    ties, so 'the same kept channels' is well defined)."""
    g = torch.Generator().manual_seed(seed)
    model = build(spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 - 1)
            elif isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
    return model


def _tp_groups(model: nn.Module, spec):
    """Torch-Pruning's pruning group of each of our channel groups (rooted at the group's conv)."""
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 3, 32, 32))
    out = []
    for g in get_family(spec.family).groups(spec):
        root = model.get_submodule(g.name)
        out.append(dg.get_pruning_group(root, tp.prune_conv_out_channels, idxs=list(range(root.out_channels))))
    return out


@pytest.mark.parametrize("arch,width", NETS)
def test_bn_scale_and_l1_norm_equal_torch_pruning_importance(arch, width):
    spec = _spec(arch, width)
    model = _randomised(spec)
    bn_imp = tp.importance.BNScaleImportance(group_reduction="mean", normalizer=None)
    l1_imp = tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer=None)
    ours_bn, ours_l1 = bn_scale(model, spec), filter_norm(model, spec, p=1)
    for grp, b, f in zip(_tp_groups(model, spec), ours_bn, ours_l1):
        torch.testing.assert_close(bn_imp(grp), b)
        torch.testing.assert_close(l1_imp(grp), f)
    if arch == "tv.resnet18":  # a residual group averages over its BNs: more than one here
        fam = get_family(spec.family)
        assert max(len(fam.group_bns(spec, g)) for g in fam.groups(spec)) >= 3


def test_lamp_scores_equal_torch_pruning_lamp_normaliser():
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(1))
    theirs = tp.importance.LAMPImportance()._lamp(w.pow(2).flatten()).reshape(w.shape)
    torch.testing.assert_close(lamp_scores(w), theirs)


@pytest.mark.parametrize("arch,width", [("vgg11", 0.25), ("tv.resnet18", 0.25), ("tv.mobilenet_v2", 0.25)])
def test_slimming_keeps_the_channels_torch_pruning_s_global_pruner_keeps(arch, width):
    """One global threshold over the same scores: our `slimming_keep` and Torch-Pruning's
    MetaPruner (global pruning, BN-scale importance) keep the same channels of every group."""
    spec = _spec(arch, width)
    model = _randomised(spec, seed=2)
    fam = get_family(spec.family)
    groups = fam.groups(spec)
    total = sum(spec.widths)
    k = int(0.4 * total)
    # TP prunes total - int(total * (1 - r)), we round(r * total): at r = (k - 1/4) / total both prune k
    ratio = (k - 0.25) / total
    keep, _, _ = slimming_keep(bn_scale(model, spec), ratio, rule="round")
    # our kept channels, identified by their BN scales (distinct random values)
    ours = {g.name: sorted(model.get_submodule(g.bn).weight[torch.from_numpy(kp)].tolist())
            for g, kp in zip(groups, keep)}
    clf = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    pruner = tp.pruner.MetaPruner(model, torch.zeros(1, 3, 32, 32), global_pruning=True, pruning_ratio=ratio,
                                  importance=tp.importance.BNScaleImportance(normalizer=None),
                                  ignored_layers=[clf], root_module_types=[nn.Conv2d])
    pruner.step()
    theirs = {g.name: sorted(model.get_submodule(g.bn).weight.tolist()) for g in groups}
    assert theirs == ours
    assert sum(len(v) for v in ours.values()) == total - k


@pytest.mark.parametrize("arch", ["tv.resnet18", pytest.param("tv.mobilenet_v2", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", ["slimming", "magnitude", "l1norm", "lamp"])
def test_data_free_proposers_run_on_torchvision_models(method, arch, small_digits, base_nets):
    """One epoch on 128 digits: the proposal builds at its widths or masks, its inherited
    weights load, and its pattern validates (a 7x7 stem's kernel map included)."""
    from archsearch import patterns as P
    from archsearch.propose import propose

    p = propose(f"{method}-{arch}-digits", small_digits, seed=0, **base_nets.kw)  # a plain base net: shared
    pat = P.extract([p], command="test")
    assert pat["arch"] == arch and pat["family"] == arch and pat["depth"] == 0
    small = build(p.spec)
    small.load_state_dict(torch.load(Path(p.run_dir) / "pruned_model.pt", weights_only=True))
    assert small(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    if p.kind == "channels":
        assert sum(p.spec.widths) < sum(p.base_spec.widths)
    else:
        kept = sum(int(m.sum()) for m in p.spec.masks.values())
        total = sum(m.size for m in p.spec.masks.values())
        assert abs(kept - 0.2 * total) <= len(p.spec.masks)
        if arch == "tv.resnet18":
            assert len(pat["proposals"][0]["layer_kernel_keep"][0]) == 7  # the stem's 7x7 map


def test_l1norm_refuses_channel_selections_in_one_line():
    from archsearch.errors import ArchsearchError
    from archsearch.propose import get_proposer, parse

    with pytest.raises(ArchsearchError, match="does not apply to the densenet family.*no"):
        pn = parse("l1norm-densenet40-c10")
        get_proposer(pn.method).check_family(pn.target.base_spec(1.0))


@pytest.mark.parametrize("pattern,kinds", [("slimming-vgg16-c10", ["transferred", "uniform", "random"]),
                                           ("magnitude-vgg16-c10", ["transferred", "uniform", "erk"])])
def test_shipped_patterns_transfer_onto_a_torchvision_model_at_the_budget(pattern, kinds):
    """`transfer --from PATTERN --to tv.resnet18-c10 --budget 2M`: every generator meets the
    budget, writes its stage mapping, and the net trains (one step)."""
    from archsearch.counting import count
    from archsearch.generate import generate
    from archsearch.patterns import find, load_pattern

    pat = load_pattern(find(pattern).path)
    target = tv_family("resnet18").base(0, 10, 1.0, input_size=32)
    for kind in kinds:
        solved = generate(kind, target, 2e6, pattern=pat if kind == "transferred" else None,
                          sparse=pat["kind"] == "sparsity", seed=0, target_name="tv.resnet18-c10")
        spec = solved.spec
        got = count(spec).params_nonzero
        assert abs(got - 2e6) / 2e6 <= 0.01, (kind, got)
        if kind == "transferred":
            assert spec.meta["stage_map"] and spec.meta["source"] == "vgg16-c10"
        model = build(spec)
        loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("method", ["thinet", pytest.param("regression", marks=pytest.mark.slow),
                                    pytest.param("lottery", marks=pytest.mark.slow)])
def test_reconstruction_and_lottery_on_a_torchvision_model(method, small_digits, base_nets):
    """ThiNet and regression select the groups with a single reader (each block's inner conv)
    and leave the residual streams whole; lottery tickets mask every conv."""
    from archsearch.propose import propose
    from archsearch.propose.reconstruct import readable

    kw = dict(seed=0, **base_nets.kw)  # the plain base net of the data-free proposers above
    if method == "lottery":
        kw["rounds"] = 1
    p = propose(f"{method}-tv.resnet18-digits", small_digits, **kw)
    small = build(p.spec)
    small.load_state_dict(torch.load(Path(p.run_dir) / "pruned_model.pt", weights_only=True))
    assert small(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    if method == "lottery":
        return
    ok = readable(p.base_spec)
    fam = get_family(p.base_spec.family)
    names = [g.name for g in fam.groups(p.base_spec)]
    assert [n for n, k in zip(names, ok) if k] == [n for n in names if n.endswith(".conv1")]
    for w, b, k in zip(p.spec.widths, p.base_spec.widths, ok):
        assert w == (b // 2 if k else b)


def test_methods_that_need_the_paper_s_block_structure_refuse_torchvision_models():
    from archsearch.errors import ArchsearchError
    from archsearch.propose import get_proposer, parse

    for method in ("sfp", "sss"):
        pn = parse(f"{method}-tv.resnet18-c10")
        with pytest.raises(ArchsearchError, match="does not apply to the tv.resnet18 family"):
            get_proposer(pn.method).check_family(pn.target.base_spec(0.25))
