"""Generators: budget matching over a grid, floors and rounding, stage mapping, mask
sampling against the kernel map, and the error paths."""

import numpy as np
import pytest

from archsearch.counting import count
from archsearch.errors import ArchsearchError
from archsearch.archs import base_spec
from archsearch.budget import sample_masks
from archsearch.generate import generate, generator_label, random_stage_ratios, stage_map
from helpers import check_generator_at_budget

CHAN = {"name": "c", "kind": "channels", "arch": "vgg16", "data": "c10",
        "stage": {"ratio_mean": [0.95, 0.8, 0.55, 0.2, 0.25]}}
SPARSE = {"name": "s", "kind": "sparsity", "arch": "vgg16", "data": "c10",
          "stage": {"density_mean": [0.7, 0.5, 0.3, 0.1, 0.1],
                    "kernel_keep_mean": [[[0.2, 0.5, 0.2], [0.5, 1.0, 0.5], [0.2, 0.5, 0.2]]] * 5}}


@pytest.mark.parametrize("arch", ["vgg11", "vgg13", "vgg16", "vgg19"])
@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("frac", [0.03, 0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("kind", ["transferred", "uniform", "random"])
@pytest.mark.parametrize("round_to", [1, 8])
def test_channel_budget_is_matched_within_1pct(arch, classes, frac, kind, round_to):
    t = base_spec(arch, classes)
    budget = frac * count(t).params
    s = generate(kind, t, budget, pattern=CHAN, round_to=round_to, seed=3)
    assert abs(count(s.spec).params - budget) / budget <= 0.01
    if kind == "uniform":  # equal layers stay equal, each within one step of round(base x one ratio)
        for b, w in zip(t.widths, s.spec.widths):
            assert w == s.spec.widths[t.widths.index(b)]
            exact = max(round_to, round_to * round(b * s.scale / round_to)) if round_to > 1 else max(1, round(b * s.scale))
            assert abs(w - min(b, exact)) <= round_to
    assert s.spec.num_classes == classes and s.spec.stages == t.stages
    assert all(1 <= w <= b for w, b in zip(s.spec.widths, t.widths))
    if round_to == 8:
        assert all(w % 8 == 0 for w in s.spec.widths)


@pytest.mark.parametrize("frac", [0.05, 0.2, 0.6])
def test_macs_budget(frac):
    t = base_spec("vgg19", 100)
    budget = frac * count(t).macs
    s = generate("transferred", t, budget, pattern=CHAN, by="macs")
    assert abs(count(s.spec).macs - budget) / budget <= 0.01


def test_guided_keeps_the_pattern_order():
    t = base_spec("vgg19", 100)
    s = generate("transferred", t, 0.1 * count(t).params, pattern=CHAN)
    ratios = [np.mean(ws) / np.mean(bs) for ws, bs in zip(s.spec.stage_widths(), t.stage_widths())]
    # the pattern's order: stage 1 > 2 > 3 > 5 > 4
    assert ratios[0] > ratios[1] > ratios[2] > ratios[4] > ratios[3]
    assert s.spec.meta["stage_map"] == [0, 1, 2, 3, 4] and s.spec.meta["origin"] == "transferred"


def test_floor_and_rounding():
    t = base_spec("vgg16", 10)
    steep = dict(CHAN, stage={"ratio_mean": [1.0, 1.0, 1.0, 0.001, 0.001]})
    s = generate("transferred", t, 0.05 * count(t).params, pattern=steep)
    assert min(s.spec.widths) >= 1
    s2 = generate("transferred", t, 0.05 * count(t).params, pattern=steep, floor=0.1)
    assert all(w >= int(np.ceil(0.1 * b)) for w, b in zip(s2.spec.widths, t.widths))
    s3 = generate("transferred", t, 0.05 * count(t).params, pattern=steep, round_to=8, floor=0.1)
    assert all(w % 8 == 0 and w >= 8 for w in s3.spec.widths)
    assert abs(s3.error) <= 0.01


def test_stage_mapping_rules():
    assert stage_map(5, 5) == [0, 1, 2, 3, 4]
    assert stage_map(5, 3) == [0, 2, 4]   # VGG -> PreResNet's 3 stages: by relative depth
    assert stage_map(3, 5) == [0, 0, 1, 2, 2]
    assert stage_map(1, 4) == [0, 0, 0, 0]
    assert generator_label(CHAN, "vgg16", "c10") == "guided"
    assert generator_label(CHAN, "vgg19", "c100") == "transferred"
    assert generator_label(CHAN, "vgg16", "c100") == "transferred"


def test_random_is_seeded_and_centred():
    a, b, c = random_stage_ratios(5, 1), random_stage_ratios(5, 1), random_stage_ratios(5, 2)
    assert a == b and a != c and sum(a) == pytest.approx(5)
    draws = np.array([random_stage_ratios(5, s) for s in range(400)])
    np.testing.assert_allclose(draws.mean(0), 1.0, atol=0.05)


@pytest.mark.parametrize("frac", [0.05, 0.2, 0.5])
def test_sparse_budget_counts_nonzero(frac):
    t = base_spec("vgg19", 100, width=0.25)
    budget = frac * count(t).params
    s = generate("transferred", t, budget, pattern=SPARSE, sparse=True, seed=1)
    c = count(s.spec)
    assert abs(c.params_nonzero - budget) / budget <= 0.01
    assert c.params == count(t).params  # dense shape kept
    dens = list(s.spec.density().values())
    by_stage = [np.mean([d for d, st in zip(dens, t.stages) if st == k]) for k in range(5)]
    assert by_stage[0] >= by_stage[2] >= by_stage[4] and by_stage[0] > by_stage[4]  # the order (1.0 caps ties)


def test_mask_sampling_matches_kernel_map():
    t = base_spec("vgg16", 10, width=0.5)
    km = np.array([[0.1, 0.4, 0.1], [0.4, 1.0, 0.4], [0.1, 0.4, 0.1]])
    dens = [0.3] * len(t.widths)
    masks = list(sample_masks(t, dens, [km] * len(t.widths), seed=0).values())
    for m in masks:
        assert m.sum() == round(0.3 * m.size)  # exact count per layer
    # keep probability per position = min(1, c x map) with mean 0.3: here c = 0.3 * 9 / 3.0
    expected = np.minimum(1.0, km * 0.9)
    for m in masks[1:]:
        freq = m.reshape(-1, 3, 3).mean(0)
        np.testing.assert_allclose(freq, expected, atol=1.5 / m.reshape(-1, 3, 3).shape[0])
    # and the kept kernels differ across kernels: positions are drawn independently
    big = masks[-1].reshape(-1, 3, 3)
    assert 0.2 < (big[:, 1, 1] & big[:, 0, 1]).mean() / (big[:, 1, 1].mean() * big[:, 0, 1].mean()) < 1.2
    again = list(sample_masks(t, dens, [km] * len(t.widths), seed=0).values())
    other = list(sample_masks(t, dens, [km] * len(t.widths), seed=1).values())
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))
    assert not np.array_equal(masks[-1], other[-1])


@pytest.mark.parametrize("kwargs, msg", [
    (dict(kind="transferred", budget=1e9), "above the full target"),
    (dict(kind="transferred", budget=10), "below the smallest"),
    (dict(kind="transferred", budget=1e6, pattern=SPARSE), "is a sparsity pattern"),
    (dict(kind="transferred", budget=1e6, pattern=CHAN, sparse=True), "is a channels pattern"),
    (dict(kind="transferred", budget=1e6, pattern=None), "needs a pattern"),
    (dict(kind="cloned", budget=1e6), "unknown generator"),
    (dict(kind="uniform", budget=1e6, by="flops"), "--by"),
    (dict(kind="uniform", budget=1e9, sparse=True), "above the full target"),
])
def test_errors(kwargs, msg):
    t = base_spec("vgg16", 10)
    kwargs = {"pattern": CHAN, **kwargs}
    kind, budget = kwargs.pop("kind"), kwargs.pop("budget")
    with pytest.raises(ArchsearchError, match=msg):
        generate(kind, t, budget, **kwargs)


def test_depth_patterns_keep_each_stages_share_of_blocks_then_fit_the_budget_by_width():
    from archsearch.archs import base_spec, get_family
    from archsearch.counting import count
    from archsearch.budget import kept_blocks_from
    from archsearch.generate import generate

    target = base_spec("resnet56", 10)
    layout = get_family("resnet").block_layout(56)
    keep = kept_blocks_from(target, [1.0, 0.5, 0.25], per_block=False)
    for st, share in enumerate([1.0, 0.5, 0.25]):
        rem = [k for b, k in zip(layout, keep) if b.stage == st and b.removable]
        assert sum(rem) == round(share * len(rem))
    assert all(k for b, k in zip(layout, keep) if not b.removable)  # stride blocks always stay
    pattern = {"name": "p", "kind": "depth", "arch": "resnet20", "data": "c10",
               "stage": {"ratio_mean": [1.0, 0.5, 0.25]}}
    full = count(target).params
    s = generate("transferred", target, 0.3 * full, pattern=pattern, depth=True).spec
    assert s.blocks == keep and abs(count(s).params - 0.3 * full) <= 0.01 * 0.3 * full
    assert len(set(zip(target.widths, s.widths))) == len(set(target.widths))  # uniform: one width per base width
    with pytest.raises(ArchsearchError, match="blocks at full width"):
        generate("transferred", target, 0.95 * full, pattern=pattern, depth=True)
    with pytest.raises(ArchsearchError, match="no residual blocks"):
        generate("guided", base_spec("vgg16", 10), 1e6, pattern=pattern, depth=True)


def test_rounding_and_floors_stay_within_the_targets_widths():
    """A floor rounded up to --round never takes a group past its target's width (a DenseNet
    selection wider than its stream failed only when built), and rounding never leaves the
    full target out of reach (a width of 9 rounds to 8, not up to 9, below full scale only)."""
    from archsearch.archs import base_spec, build
    from archsearch.counting import count
    from archsearch.generate import generate

    t = base_spec("densenet40", 10, width=0.3)
    s = generate("uniform", t, 0.95 * count(t).params, floor=0.9, round_to=8).spec
    assert all(w <= c for w, c in zip(s.widths, t.widths))
    build(s)
    t = base_spec("densenet40", 10, width=0.25)
    full = count(t).params
    assert count(generate("uniform", t, full, round_to=8).spec).params == full


def test_stage_transfer_maps_conv_stages_onto_conv_stages():
    """The ImageNet VGG-11's channel patterns have a sixth stage, its classifier's groups: a
    transfer maps conv stages onto conv stages and the classifier's onto the classifier's."""
    from archsearch.archs import base_spec
    from archsearch.generate import pattern_stage_values

    inv = base_spec("invgg11", 1000, width=0.125, nets="imagenet")
    v19 = base_spec("vgg19", 100, width=0.25)
    p_inv = {"kind": "channels", "arch": "invgg11", "data": "in", "stage": {"ratio_mean": [.9, .8, .7, .6, .5, .1]}}
    p_v16 = {"kind": "channels", "arch": "vgg16", "data": "c10", "stage": {"ratio_mean": [.9, .8, .7, .6, .5]}}
    assert pattern_stage_values(p_inv, v19)[1] == [0, 1, 2, 3, 4]  # the classifier's 0.1 goes nowhere
    assert pattern_stage_values(p_v16, inv)[1] == [0, 1, 2, 3, 4, 4]  # no classifier stage: the last conv's
    assert pattern_stage_values(p_inv, inv)[1] == [0, 1, 2, 3, 4, 5]
    assert pattern_stage_values(p_v16, v19)[1] == [0, 1, 2, 3, 4]


# -- every registered generator (issue 28: tests driven by the registry, not a hand-written list) ----
def _case(kind: str):
    """(target, pattern) for a kind: a VGG-16 w0.25 and a pattern extracted on it (so that the
    pruned generator, which rebuilds the pattern's own net, applies), or a ResNet-56 and a depth pattern."""
    from helpers import make_pattern

    if kind == "depth":
        return base_spec("resnet56", 10), {"name": "p", "kind": "depth", "arch": "resnet20", "data": "c10",
                                           "stage": {"ratio_mean": [1.0, 0.5, 0.25]}}
    return base_spec("vgg16", 10, width=0.25), make_pattern(kind, "vgg16", "c10")


@pytest.mark.parametrize("name", list(__import__("archsearch.generate", fromlist=["GENERATORS"]).GENERATORS))
def test_every_generator_builds_its_kinds_at_a_budget_and_refuses_the_others(name):
    from archsearch.generate import GENERATORS, KINDS

    g = GENERATORS[name]
    assert g.kinds and set(g.kinds) <= set(KINDS) and g.colour.startswith("#") and g.about
    for kind in KINDS:
        t, pat = _case(kind)
        budget = 0.3 * count(t).params
        if check_generator_at_budget(name, t, kind, budget, pat) is None:
            continue
        kw = {"sparse": kind == "sparsity", "depth": kind == "depth", "seed": 1}
        if g.needs_pattern:
            with pytest.raises(ArchsearchError, match="needs a pattern"):
                generate(name, t, budget, **{**kw, "pattern": None})


def test_an_unknown_generator_names_the_registered_ones():
    from archsearch.generate import GENERATORS

    with pytest.raises(ArchsearchError, match=", ".join(GENERATORS)):
        generate("cosine", base_spec("vgg16", 10), 1e5)


def test_shuffled_keeps_each_layers_density_and_places_its_weights_at_random():
    """`shuffled` (the layer-wise shuffle of Su et al. 2020 and Frankle et al. 2021): the same
    nonzero count in every layer as the `pruned` generator's net at the same budget, exactly,
    but with the weights spread over every kernel position, where `pruned` follows the
    pattern's keep maps (here: the middle row of each 3x3 kernel kept ten times as often)."""
    from helpers import make_pattern

    target = base_spec("vgg16", 10, width=0.25)
    pattern = make_pattern("sparsity", "vgg16", "c10")
    row_heavy = [[0.1, 0.1, 0.1], [1.0, 1.0, 1.0], [0.1, 0.1, 0.1]]
    for p in pattern["proposals"]:
        p["layer_kernel_keep"] = [row_heavy] * len(p["layer_kernel_keep"])
    sizes = [m.size for m in generate("pruned", target, 1e5, sparse=True, pattern=pattern).spec.masks.values()]
    dens = pattern["layers"]["density_mean"]
    budget = count(target).params - sum((1 - d) * n for d, n in zip(dens, sizes))  # the pattern's own net
    nets = {g: generate(g, target, budget, sparse=True, pattern=pattern, seed=3).spec for g in ("pruned", "shuffled")}
    kept = {g: [int(m.sum()) for m in s.masks.values()] for g, s in nets.items()}
    assert kept["shuffled"] == kept["pruned"]
    density = [k / m.size for k, m in zip(kept["shuffled"], nets["shuffled"].masks.values())]
    assert density == pytest.approx(dens, abs=0.01)
    rows = {g: np.sum([m.reshape(-1, 3, 3).sum(axis=(0, 2)) for m in s.masks.values()], axis=0)
            for g, s in nets.items()}
    assert rows["pruned"][1] > 3 * rows["pruned"][0]       # the pattern's positions
    assert rows["shuffled"][1] < 1.1 * rows["shuffled"][0]  # every position alike
    assert nets["shuffled"].meta["origin"] == "shuffled"
    with pytest.raises(ArchsearchError, match="use it with --kind sparsity"):
        generate("shuffled", target, budget, pattern=make_pattern("channels", "vgg16", "c10"))


def test_reinit_keeps_the_proposals_own_masks_and_thins_or_grows_them_at_other_budgets(tmp_path, monkeypatch):
    """`reinit` (Su et al. 2020, Frankle et al. 2021; a table's Scratch-E): at the proposal's
    own budget, its masks exactly; at a smaller (larger) one, each layer's mask thinned (grown)
    at random to the solved density, which is `shuffled`'s at that budget; other targets and
    missing run folders are refused in one line."""
    from archsearch.data import load_dataset
    from archsearch.patterns import extract
    from archsearch.propose import propose

    monkeypatch.chdir(tmp_path)  # the pattern records its proposals' run folders relative to here
    props = [propose("snip-vgg11-digits", load_dataset("digits"), preset="tiny", workdir="w", device="cpu", seed=s)
             for s in (0, 1)]
    pattern = extract(props)
    target = props[0].base_spec
    for seed, prop in enumerate(props):
        own = count(prop.spec).params_nonzero
        net = generate("reinit", target, own, sparse=True, pattern=pattern, seed=seed).spec
        assert net.masks.keys() == prop.spec.masks.keys()
        assert all(np.array_equal(net.masks[k], prop.spec.masks[k]) for k in net.masks)
        assert net.meta["masks_of"]["seed"] == seed and net.meta["origin"] == "reinit"
    for factor, inside in ((0.6, True), (1.3, False)):
        budget = factor * count(props[1].spec).params_nonzero
        net = generate("reinit", target, budget, sparse=True, pattern=pattern, seed=1).spec
        mask, base = net.masks, props[1].spec.masks
        assert all(((mask[k] & ~base[k]).sum() == 0) if inside else ((base[k] & ~mask[k]).sum() == 0) for k in mask)
        dens = [float(base[k].mean()) for k in base]
        kept = [m.mean() for m in mask.values()]
        ratios = [k / d for k, d in zip(kept, dens) if d * factor < 1]  # one scale for every layer not capped at 1
        assert max(ratios) / min(ratios) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ArchsearchError, match="do not fit vgg13"):
        generate("reinit", base_spec("vgg13", 10, width=0.25), 1e4, sparse=True, pattern=pattern)
    pattern["proposals"][0]["run"] = "gone/seed0"
    with pytest.raises(ArchsearchError, match="is not on this machine"):
        generate("reinit", target, 1e4, sparse=True, pattern=pattern, seed=0)
