"""Every registered family and generator, found in the registries (as timm's tests run over
`list_models()`): a family added by its own file, or a generator added to `GENERATORS`, is
checked here with no list to edit.

Each check is a function of the family, so that the last tests can show the claim: a family
defined in this file and registered the way a new file registers one is picked up by the
registry and passes the same checks. Numbers against the paper's own code stay in
test_families.py, test_imagenet_archs.py and test_generate.py."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archsearch import families
from archsearch.archs import (FAMILIES, Conv, Family, Group, Op, all_archs, base_spec, build, family_base,
                              get_family, parse_arch, register_family, scale_width)
from archsearch.counting import count
from archsearch.errors import ArchsearchError
from archsearch.generate import GENERATORS, KINDS
from archsearch.patterns import extract
from archsearch.propose import Proposal
from archsearch.spec import ArchSpec
from helpers import check_generator_at_budget, narrowed_at_random


def registered() -> list[Family]:
    """The families the checks run over: the registry itself, read when asked."""
    return list(FAMILIES.values())


def small_base(fam: Family) -> ArchSpec:
    """The family's shallowest listed net, small enough to run on a CPU: a quarter of the width at
    32 px for CIFAR's networks, an eighth at 64 px for ImageNet's."""
    big = fam.nets == "imagenet"
    return family_base(fam.name, min(fam.depths), 10, width=0.125 if big else 0.25, input_size=64 if big else 32)


def pruned(spec: ArchSpec, seed: int) -> ArchSpec:
    """Every group at a random width (and random selections), every other removable block gone."""
    rng = np.random.default_rng(seed)
    fam = get_family(spec.family)
    ws, sel = [], {}
    for g, w in zip(fam.groups(spec), spec.widths):
        nw = int(rng.integers(max(1, w // 4), w + 1))
        ws.append(nw)
        if g.kind == "select" and rng.random() < 0.5:
            sel[g.name] = sorted(rng.choice(g.stream, nw, replace=False).tolist())
    blocks = fam.block_layout(spec.depth)
    flags = [not b.removable or i % 2 == 0 for i, b in enumerate(blocks)] if blocks else None
    return spec.replace(widths=ws, selected=sel or None, blocks=flags, meta={})


def sparse(spec: ArchSpec, seed: int, density: float = 0.4) -> ArchSpec:
    rng = np.random.default_rng(seed)
    masks = {c.name: rng.random(c.shape) < density for c in get_family(spec.family).convs(spec)}
    for m in masks.values():
        m.flat[0] = True
    return spec.replace(masks=masks)


# -- the checks, one function each --------------------------------------------------------------------
def check_builds_runs_and_counts(fam: Family) -> None:
    """Base and pruned nets (blocks removed too) build, run forward and backward, and their
    params and MACs from the spec alone are the module's; a sparse net's masks zero its
    weights and its non-zero count says how many."""
    torch.manual_seed(0)
    base = small_base(fam)
    for s in (base, pruned(base, 1)):
        model, c = build(s), count(s)
        with FlopCounterMode(display=False) as fc:
            y = model(torch.randn(2, s.in_channels, s.input_size, s.input_size))
        y.sum().backward()
        assert y.shape == (2, s.num_classes)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        assert c.params == sum(p.numel() for p in model.parameters())
        assert 2 * c.macs * 2 == fc.get_total_flops()  # 2 images, 2 FLOPs per MAC
    s = sparse(base, 2)
    model, c = build(s), count(s)
    mods = dict(model.named_modules())
    assert all((mods[n].weight.detach().numpy()[~m] == 0).all() for n, m in s.masks.items())
    assert c.params == sum(p.numel() for p in model.parameters())
    assert c.params - c.params_nonzero == sum(int((~m).sum()) for m in s.masks.values())


def check_narrow_equals_zeroing_bn(fam: Family) -> None:
    """Inherited weights: the narrowed net computes what the wide one does with the dropped
    channels' BN scale and shift at zero."""
    spec = small_base(fam)
    fam, model, keep, small_spec, state, small = narrowed_at_random(spec)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for g, k in zip(fam.groups(spec), keep):
            idx = fam.selection(spec, g) if g.kind == "select" else list(range(len(k)))
            off = torch.tensor([i for i, kk in zip(idx, k) if not kk], dtype=torch.long)
            for bn in fam.group_bns(spec, g):
                modules[bn].weight[off] = 0.0
                modules[bn].bias[off] = 0.0
        x = torch.randn(3, spec.in_channels, spec.input_size, spec.input_size)
        torch.testing.assert_close(small(x), model(x), atol=1e-4, rtol=1e-4)
    assert small_spec.widths == [int(k.sum()) for k in keep]
    build(small_spec).load_state_dict(state)


def check_spec_files_round_trip(fam: Family, folder) -> None:
    """Specs save and load as equal specs with their groups named, the same fingerprint
    (`identity`), and groups that do not match the family's are refused in one line."""
    base = small_base(fam)
    for i, s in enumerate((base, pruned(base, 3), sparse(base, 4))):
        d = s.to_dict()
        assert d["groups"] == [g.name for g in fam.groups(s)]
        f = folder / f"{fam.name}-{i}.json"
        s.save(f)
        again = ArchSpec.load(f)
        assert again == s and ArchSpec.from_json(s.to_json()) == s
        assert json.dumps(again.identity(), sort_keys=True) == json.dumps(s.identity(), sort_keys=True)
        build(again)
    d = base.to_dict()
    d["groups"] = [f"{n}x" for n in d["groups"]]
    with pytest.raises(ArchsearchError, match="do not match"):
        ArchSpec.from_dict(d)


def check_names_parse_back(fam: Family) -> None:
    """Each listed depth is a name users can type, which means this family; a depth it does
    not have is one line naming its rule."""
    for d in fam.depths:
        assert f"{fam.name}{d}" in all_archs()
        assert parse_arch(f"{fam.name}{d}", fam.nets) == (fam, d)
    missing = next(d for d in range(max(fam.depths) + 1, max(fam.depths) + 100) if not fam.accepts(d))
    with pytest.raises(ArchsearchError, match=fam.name):
        parse_arch(f"{fam.name}{missing}", fam.nets)


FAMILY_CHECKS = (check_builds_runs_and_counts, check_narrow_equals_zeroing_bn, check_names_parse_back)


@pytest.mark.parametrize("check", FAMILY_CHECKS, ids=lambda c: c.__name__[6:])
@pytest.mark.parametrize("name", [f.name for f in registered()])
def test_every_family(name, check):
    check(FAMILIES[name])


@pytest.mark.parametrize("name", [f.name for f in registered()])
def test_every_family_saves_and_loads_its_specs(name, tmp_path):
    check_spec_files_round_trip(FAMILIES[name], tmp_path)


def test_every_family_is_listed_and_reachable():
    """The registry is what users can name: every family has listed depths and every listed
    name means a registered family (the paper's nets among them)."""
    assert registered() and all(f.depths for f in registered())
    assert {parse_arch(a)[0].name for a in all_archs()} == set(FAMILIES)
    assert {"resnet110", "preresnet164", "densenet40", "vgg19"} <= set(all_archs())
    assert set(families.FAMILIES) == set(FAMILIES)  # one registry: archs re-exports it


# -- every generator, on every family -----------------------------------------------------------------
def own_pattern(base: ArchSpec, kind: str) -> dict:
    """A pattern extracted from a pruned `base` (as `extract` writes it), so that every
    generator applies to `base`, the pruned one, which rebuilds the pattern's own net, included."""
    if kind == "depth":
        return {"name": "p", "kind": "depth", "arch": base.name, "data": "c10",
                "stage": {"ratio_mean": [0.5] * base.num_stages}}
    spec = sparse(base, 5) if kind == "sparsity" else pruned(base, 5).replace(blocks=None, meta={})
    method = "magnitude" if kind == "sparsity" else "slimming"
    info = {"threshold": 0.1, "clamped": []}
    if kind == "sparsity":
        info["kernel_keep"] = [m.reshape(-1, *m.shape[-2:]).mean(0).tolist() for m in spec.masks.values()]
    run = "r"
    if kind == "sparsity":  # the proposal's run folder, where `reinit` reads its masks
        run = tempfile.mkdtemp(prefix="archsearch-test-proposal-")
        spec.save(Path(run) / "spec.json")
    settings = {"proposer": f"{method}-{base.name}-c10", "ratio": 0.5, "preset": "tiny", "width": base.width,
                "floor": 0.0, "sparsity": 0.0, "schedule": {"epochs": 3, "batch_size": 64, "lr": 0.05}}
    p = Proposal(proposer=settings["proposer"], method=method, kind=kind, seed=0, settings=settings, spec=spec,
                 base_spec=base, base_acc=0.9, base_final_acc=0.9, pruned_acc=0.5, info=info, run_dir=run,
                 base_epochs=3, base_seconds=1.0, device="cpu", torch_version="t", archsearch_version="v",
                 date="2026-01-01")
    return extract([p], name=f"p-{kind}", command="test")


def check_generators_match_budgets(fam: Family) -> None:
    """Every generator builds each kind it declares at 40% of the base's params (of its conv
    weights for sparse nets), within 1%, and
    refuses the kinds it does not in one line."""
    base = small_base(fam)
    has_blocks = any(b.removable for b in fam.block_layout(base.depth))
    for kind in KINDS:
        if kind == "depth" and not has_blocks:
            continue
        pattern = own_pattern(base, kind)
        budget = 0.4 * count(base).params
        if kind == "sparsity":  # 40% of the conv weights: masks leave the classifier (and its BNs) whole
            budget = count(base).params - 0.6 * sum(int(np.prod(c.shape)) for c in fam.convs(base))
        for name in GENERATORS:
            spec = check_generator_at_budget(name, base, kind, budget, pattern, where=(fam.name,))
            if spec is not None:
                fam.check(spec)


@pytest.mark.parametrize("name", [f.name for f in registered()])
def test_every_generator_on_every_family(name):
    check_generators_match_budgets(FAMILIES[name])


# -- the extension claim: a new family is one class, and the checks above pick it up ------------------
class TinyNet(nn.Module):
    def __init__(self, spec: ArchSpec):
        super().__init__()
        w = spec.widths[0]
        self.conv = nn.Conv2d(spec.in_channels, w, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(w)
        self.pool = nn.AvgPool2d(spec.input_size)
        self.fc = nn.Linear(w, spec.num_classes)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


class TinyFamily(Family):
    """One conv, its BN and a classifier: the least a family declares."""

    name = "tiny"
    title = "a test's one-conv net"
    depths = (1,)

    def layout(self, depth: int, width: float) -> list[Group]:
        return [Group("conv", "conv", 0, scale_width(1024, width), bn="bn")]

    def convs(self, spec: ArchSpec) -> list[Conv]:
        return [Conv("conv", spec.widths[0], spec.in_channels, 3, 0, spec.input_size)]

    def wires(self, spec: ArchSpec) -> dict:
        return {"conv": ("conv", None), "bn": ("conv", None), "fc": (None, "conv")}

    def ops(self, spec: ArchSpec) -> list[Op]:
        w, hw = spec.widths[0], spec.input_size
        nonzero = None if spec.masks is None else int(spec.masks["conv"].sum())
        return [Op("conv", spec.in_channels, w, hw, k=3, nonzero=nonzero), Op("bn", w, w, hw), Op("relu", w, w, hw),
                Op("avgpool", w, w, 1, k=hw), Op("linear", w, spec.num_classes, 1)]

    def module(self, spec: ArchSpec) -> nn.Module:
        return TinyNet(spec)


@pytest.fixture
def tiny():
    """TinyFamily registered as a family's file registers itself (`@register_family`), and
    taken out of the registry again after the test."""
    register_family(TinyFamily)
    yield FAMILIES["tiny"]
    del FAMILIES["tiny"]


def test_a_new_family_is_picked_up_by_every_registry_driven_check(tiny, tmp_path):
    assert tiny in registered() and get_family("tiny") is tiny
    assert "tiny1" in all_archs() and base_spec("tiny1", 10).widths == [1024]
    for check in FAMILY_CHECKS:
        check(tiny)
    check_spec_files_round_trip(tiny, tmp_path)
    check_generators_match_budgets(tiny)


def test_the_new_family_leaves_the_registry_as_it_was():
    assert "tiny" not in FAMILIES and "tiny1" not in all_archs()


def test_spec_sits_below_the_families():
    """`archsearch.spec` reaches its family through the registry below it, never by importing
    `archsearch.archs` (which builds on it): no import circle."""
    code = "import sys, archsearch.spec; sys.exit('archsearch.archs' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_spec_used_on_its_own_loads_the_families_it_needs(tmp_path):
    """`ArchSpec.load` and `==` with nothing else imported (a notebook, a script) find the
    built-in families on first lookup, and a torchvision family loads torchvision only when
    named (review, 2026-12-07: it was a RuntimeError, and torchvision loaded with every run)."""
    base_spec("resnet20", 10, width=0.25).save(tmp_path / "s.json")
    code = ("import sys\nfrom archsearch.spec import ArchSpec\n"
            f"a = ArchSpec.load({str(tmp_path / 's.json')!r})\n"
            f"assert a == ArchSpec.load({str(tmp_path / 's.json')!r}) and a.family == 'resnet'\n"
            "assert 'torchvision' not in sys.modules, 'torchvision loaded without a tv family'\n"
            "from archsearch.archs import get_family\n"
            "assert get_family('tv.resnet18').title == 'torchvision resnet18' and 'torchvision' in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
