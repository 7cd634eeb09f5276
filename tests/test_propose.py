"""Proposers: the pruning rules on hand-made inputs, the inherited weights, and the
run directories (reuse and resume)."""

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from archsearch.archs import base_spec, build, get_family
from archsearch.errors import ArchsearchError
from archsearch.propose import parse, propose, resolve_settings
from archsearch.propose.magnitude import kernel_keep, magnitude_masks
from archsearch.propose.slimming import slimming_keep


def test_slimming_synthetic_gammas_give_known_threshold_and_cfg():
    gammas = [torch.tensor([0.9, 0.1, 0.5, 0.05]), torch.tensor([0.2, 0.3, -0.8, 0.01, 0.6, 0.02])]
    keep, thr, clamped = slimming_keep(gammas, ratio=0.5, rule="round")  # 10 channels -> the 5 smallest |gamma|
    # |gamma| sorted: .01 .02 .05 .1 .2 | .3 .5 .6 .8 .9 -> threshold .2
    assert thr == pytest.approx(0.2)
    assert [k.tolist() for k in keep] == [[True, False, True, False], [False, True, True, False, True, False]]
    assert [int(k.sum()) for k in keep] == [2, 3] and clamped == []


def test_slimming_floor_prevents_empty_layers_and_is_recorded():
    gammas = [torch.tensor([1.0, 0.9, 0.8, 0.7]), torch.tensor([0.01, 0.02, 0.03, 0.04])]
    keep, _, clamped = slimming_keep(gammas, ratio=0.5, rule="round")
    assert [int(k.sum()) for k in keep] == [4, 1]  # the global threshold empties layer 1
    assert keep[1].tolist() == [False, False, False, True]  # the floor keeps its largest |gamma|
    assert clamped == [{"layer": 1, "kept_by_threshold": 0, "kept": 1, "width": 4}]
    keep, _, clamped = slimming_keep(gammas, ratio=0.5, floor=0.5, rule="round")
    assert int(keep[1].sum()) == 2 and clamped[0]["kept"] == 2


def test_magnitude_threshold_hits_exact_sparsity():
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(8, 3, 3, 3, generator=g), torch.randn(16, 8, 3, 3, generator=g)]
    ws[1][:4] = 0.5  # many exact ties
    total = sum(w.numel() for w in ws)
    for ratio in (0.1, 0.37, 0.5, 0.8, 0.95):
        masks, thr, clamped = magnitude_masks(ws, ratio, rule="round")
        kept = sum(int(m.sum()) for m in masks)
        assert total - kept == round(ratio * total)
        assert total - sum(int(m.sum()) for m in magnitude_masks(ws, ratio)[0]) == int(ratio * total) + 1
        assert all(m.shape == tuple(w.shape) for m, w in zip(masks, ws))
        allw = torch.cat([w.abs().flatten() for w in ws])
        keptw = torch.cat([w.abs().flatten()[torch.from_numpy(m.flatten())] for w, m in zip(ws, masks)])
        assert keptw.min() >= thr and (allw <= thr).sum() >= round(ratio * total)
        assert clamped == []


def test_magnitude_never_empties_a_layer():
    """A layer whose weights all fall under the global threshold keeps its largest one (an
    empty layer makes the output constant, and such a mask is refused on load)."""
    ws = [torch.full((4, 3, 3, 3), 5.0), torch.full((4, 4, 3, 3), 1e-3)]
    ws[1][2, 1, 1, 1] = 2e-3
    masks, _, clamped = magnitude_masks(ws, 0.5, rule="round")  # 126 of 252 pruned, all in the tiny layer
    assert clamped == [] and masks[1].any()
    masks, _, clamped = magnitude_masks(ws, 0.6, rule="round")  # 151 pruned: all 144 tiny ones and 7 big ones
    assert clamped == [1] and int(masks[1].sum()) == 1 and masks[1][2, 1, 1, 1]


def test_kernel_position_map_of_hand_made_mask():
    m = np.zeros((2, 2, 3, 3), dtype=bool)
    m[:, :, 1, 1] = True          # centre always kept
    m[0, :, 0, 0] = True          # corner kept in half of the 4 kernels
    m[0, 0, 2, 2] = True          # opposite corner in a quarter
    km = kernel_keep(m)
    expect = np.zeros((3, 3))
    expect[1, 1], expect[0, 0], expect[2, 2] = 1.0, 0.5, 0.25
    np.testing.assert_allclose(km, expect)


def test_parse_and_settings_errors():
    assert str(parse("slimming-vgg16-c10")) == "slimming-vgg16-c10"
    # DESIGN.md's name for He et al. 2017 is an alias: runs and records use the canonical one
    assert str(parse("lasso-resnet56-c10")) == "regression-resnet56-c10"
    assert resolve_settings("lasso-vgg16-c10", ratio=0.3)[2].key() == resolve_settings("regression-vgg16-c10",
                                                                                       ratio=0.3)[2].key()
    for bad, msg in (("prune-vgg16-c10", "unknown pruning method"), ("slimming", "METHOD-ARCH-DATA"),
                     ("slimming-vgg15-c10", "depths"), ("magnitude-vgg16-svhn", "unknown dataset")):
        with pytest.raises(ArchsearchError, match=msg):
            parse(bad)
    with pytest.raises(ArchsearchError, match="prune ratio"):
        resolve_settings("slimming-vgg16-c10", ratio=1.0)
    with pytest.raises(ArchsearchError, match="floor"):
        resolve_settings("slimming-vgg16-c10", floor=1.5)


def test_sparsity_defaults_to_the_papers_s():
    from archsearch.propose import get_proposer
    from archsearch.train import BNL1

    _, prop, st, _, base = resolve_settings("slimming-vgg16-c10", preset="fast")
    hooks = prop.hooks(base, st)  # the trainer's regulariser: BN-L1 at the paper's s
    assert st.sparsity == 1e-4 and [type(h) for h in hooks] == [BNL1] and hooks[0].s == 1e-4  # s = 1e-4 for VGG
    _, _, res, _, _ = resolve_settings("slimming-resnet56-c10", preset="fast")
    assert res.sparsity == 1e-5  # and 1e-5 for ResNet / DenseNet
    _, _, mag, _, base = resolve_settings("magnitude-vgg16-c10", preset="fast")
    assert mag.sparsity == 0.0 and get_proposer("magnitude").hooks(base, mag) == []
    _, _, given, _, _ = resolve_settings("slimming-vgg16-c10", preset="fast", sparsity=3e-4)
    assert given.sparsity == 3e-4


class _Stop(Exception):
    pass


@pytest.mark.parametrize("method", ["slimming", "magnitude"])
def test_proposal_runs_are_reused_and_resumed(method, small_digits, tmp_path):
    kw = dict(preset="tiny", width=0.125, epochs=3, workdir=tmp_path, device="cpu", batch_size=32, checkpoint_every=1)
    calls = []

    def stop_at_3(st):
        calls.append(st.epoch)
        if st.epoch == 3:
            raise _Stop

    # interrupted at the end of epoch 3, before its checkpoint: epochs 1-2 are on disk
    with pytest.raises(_Stop):
        propose(f"{method}-vgg11-digits", small_digits, seed=0, progress=stop_at_3, **kw)
    runs = list(tmp_path.glob(f"{method}-vgg11-digits/*/seed0"))
    assert len(runs) == 1 and not (runs[0] / "proposal.json").exists()
    resumed_epochs = []
    p = propose(f"{method}-vgg11-digits", small_digits, seed=0, progress=lambda st: resumed_epochs.append(st.epoch), **kw)
    assert not p.reused and resumed_epochs == [3]  # resumed: only the epoch the checkpoint lacked
    rec = json.loads((runs[0] / "proposal.json").read_text())
    assert rec["seed"] == 0 and rec["method"] == method and 0 <= rec["pruned_acc"] <= 1
    again = propose(f"{method}-vgg11-digits", small_digits, seed=0,
                    progress=lambda st: pytest.fail("a finished proposal must be reused"), **kw)
    assert again.reused and again.spec == p.spec and again.base_acc == p.base_acc
    if method == "slimming":
        total = sum(p.spec.base_widths)  # vggprune.py's count: int(0.6 total) + 1 channels go
        assert sum(p.spec.widths) == total - (int(0.6 * total) + 1) + sum(
            c["kept"] - c["kept_by_threshold"] for c in p.info["clamped"])
        assert (runs[0] / "pruned_model.pt").exists()
    else:
        kept = sum(int(m.sum()) for m in p.spec.masks.values())
        total = sum(m.size for m in p.spec.masks.values())
        assert total - kept == int(0.8 * total) + 1  # cifar_prune.py's count
    # other settings -> another run directory, not a stale reuse
    other = propose(f"{method}-vgg11-digits", small_digits, seed=0, **{**kw, "epochs": 1})
    assert not other.reused and other.run_dir != p.run_dir


def test_proposal_data_must_match(small_digits, tmp_path):
    from dataclasses import replace

    with pytest.raises(ArchsearchError, match="proposes on c10"):
        propose("slimming-vgg11-c10", replace(small_digits, name="digits"), workdir=tmp_path, preset="tiny")


@pytest.mark.parametrize("method,arch", [pytest.param("slimming", "resnet20", marks=pytest.mark.slow),
                                         ("slimming", "preresnet56"), ("slimming", "densenet40"),
                                         ("magnitude", "resnet20"),
                                         pytest.param("magnitude", "preresnet56", marks=pytest.mark.slow)])
def test_proposers_on_the_residual_and_dense_families(method, arch, small_digits, tmp_path):
    """One epoch on 512 digits: the proposal builds, its inherited weights load and give the
    recorded accuracy, and a pattern is extracted from it."""
    from dataclasses import replace as dc_replace

    from archsearch.archs import get_family
    from archsearch.patterns import extract
    from archsearch.train import evaluate

    data = dc_replace(small_digits, x_train=small_digits.x_train[:128], y_train=small_digits.y_train[:128])
    p = propose(f"{method}-{arch}-digits", data, seed=0, workdir=tmp_path, preset="tiny", epochs=1, width=0.125,
                ratio=0.5)
    fam = get_family(p.spec.family)
    fam.check(p.spec)
    state = torch.load(Path(p.run_dir) / "pruned_model.pt", weights_only=True)
    assert evaluate(p.spec, state, data, "cpu") == pytest.approx(p.pruned_acc)
    pat = extract([p], command="test")
    if method == "slimming":
        assert sum(p.spec.widths) < sum(p.base_spec.widths)
        assert pat["layer_names"] == [g.name for g in fam.groups(p.base_spec)]
    else:
        convs = fam.convs(p.base_spec)
        assert pat["kernels"] == [c.k for c in convs] and set(p.spec.masks) == {c.name for c in convs}
        kept = sum(int(m.sum()) for m in p.spec.masks.values())
        assert abs(kept - 0.5 * sum(m.size for m in p.spec.masks.values())) <= len(convs)


def test_train_subset_is_a_setting_of_its_own(small_digits, tmp_path, monkeypatch):
    """A proposal on a training subset gets its own run directory and says so in its pattern;
    without one, the key is the one computed before the setting existed."""
    import hashlib

    from archsearch import patterns as P

    _, _, plain, _, _ = resolve_settings("slimming-vgg11-digits", preset="tiny")
    legacy = {k: v for k, v in asdict(plain).items() if k not in ("train_subset", "layer_ratios", "rounds",
                                                                   "rewind_epoch", "selection", "options")}
    assert plain.key().endswith(hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:8])
    with pytest.raises(ArchsearchError, match="training subset"):
        resolve_settings("slimming-vgg11-digits", train_subset=0)
    import archsearch.propose.base as prop_mod  # where `Proposer.run` trains the base net

    seen, real_train = [], prop_mod.train
    monkeypatch.setattr(prop_mod, "train", lambda spec, data, *a, **k: seen.append(len(data.y_train))
                        or real_train(spec, data, *a, **k))
    kw = dict(preset="tiny", width=0.125, epochs=1, workdir=tmp_path, device="cpu", batch_size=32)
    p = propose("slimming-vgg11-digits", small_digits, train_subset=100, **kw)
    full = propose("slimming-vgg11-digits", small_digits, **kw)
    assert seen == [100, len(small_digits.y_train)] and p.settings["train_subset"] == 100
    assert full.run_dir != p.run_dir and "train_subset" not in full.settings
    pat = P.extract([p], command="test")
    assert pat["provenance"]["train_subset"] == 100 and "100 training images" in pat["provenance"]["scale"]


# -- the contract's parts, and the methods built on them -----------------------------------------
def _original_resnet_cfg(depth: int, skip: list[int], prune_prob: list[float]) -> list[int]:
    """`cfg` as res56prune.py / res110prune.py compute it: convs numbered from 1 (the stem),
    every even-numbered one is a block's first conv, pruned at its stage's ratio unless skipped."""
    n = (depth - 2) // 6
    cfg, layer_id = [], 1
    for out_channels in [16] + [w for w in (16, 32, 64) for _ in range(2 * n)]:
        if layer_id in skip:
            cfg.append(out_channels)
        elif layer_id % 2 == 0:
            stage = 0 if layer_id <= 2 * n else 1 if layer_id <= 4 * n else 2
            cfg.append(int(out_channels * (1 - prune_prob[stage])))
        layer_id += 1
    return cfg


@pytest.mark.parametrize("arch,variant,skip,probs", [
    ("resnet56", "A", [16, 20, 38, 54], [0.1, 0.1, 0.1]), ("resnet56", "B", [16, 18, 20, 34, 38, 54], [0.6, 0.3, 0.1]),
    ("resnet110", "A", [36], [0.5, 0.0, 0.0]), ("resnet110", "B", [36, 38, 74], [0.5, 0.4, 0.3])])
def test_l1norm_variants_are_the_papers_configurations(arch, variant, skip, probs):
    from archsearch.propose import get_proposer

    _, prop, st, _, base = resolve_settings(f"l1norm-{arch}-c10", variant=variant, width=1.0)
    assert st.proposer == f"l1norm-{arch}-c10.{variant}"
    # the variant in the name and in --variant at once: the same proposer, not ".A.A"
    assert resolve_settings(f"l1norm-{arch}-c10.{variant}", variant=variant, width=1.0)[2].proposer == st.proposer
    pruned = prop.prune(build(base), base, st)
    assert pruned.spec.widths == _original_resnet_cfg(int(arch[6:]), skip, probs)
    assert pruned.spec.base_widths == base.widths
    assert get_proposer("l1norm") is prop


def test_l1norm_vgg16_a_is_vggprune_cfg():
    _, prop, st, _, base = resolve_settings("l1norm-vgg16-c10.A", width=1.0)
    pruned = prop.prune(build(base), base, st)
    cfg = [32, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 256, 256, 256, 'M', 256, 256, 256]  # vggprune.py
    assert pruned.spec.widths == [c for c in cfg if c != 'M']
    assert st.ratio == pytest.approx(1 - sum(pruned.spec.widths) / sum(base.widths))


def test_l1norm_keeps_the_largest_l1_filters_and_their_weights():
    """Filters given known L1 norms: each group keeps int(n(1-r)) of the largest, and the kept
    net computes what the full net computes with the pruned filters' BN outputs at zero."""
    _, prop, st, _, base = resolve_settings("l1norm-resnet20-digits", stage_ratios=[0.5, 0.25, 0.5], width=0.5)
    model = build(base).eval()
    fam = get_family(base.family)
    modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(0)
    expect = []
    with torch.no_grad():
        for g in fam.groups(base):
            w = modules[g.name].weight
            norms = torch.randperm(w.shape[0], generator=gen).float() + 1  # distinct L1 norms 1..n
            w.copy_(torch.sign(torch.randn(w.shape, generator=gen)) * (norms / w[0].numel()).view(-1, 1, 1, 1))
            k = int(w.shape[0] * (1 - {0: 0.5, 1: 0.25, 2: 0.5}[g.stage]))
            expect.append(sorted(torch.argsort(norms, descending=True)[:k].tolist()))
    pruned = prop.prune(model, base, st)
    assert pruned.spec.widths == [len(e) for e in expect]
    x = torch.randn(4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        for g, keep in zip(fam.groups(base), expect):  # the wide net with the pruned channels silenced
            bn = modules[g.bn]
            drop = [i for i in range(bn.num_features) if i not in keep]
            bn.weight[drop] = 0
            bn.bias[drop] = 0
        small = build(pruned.spec).eval()
        small.load_state_dict(pruned.state)
        assert torch.allclose(small(x), model(x), atol=1e-5)


def test_lamp_scores_follow_the_formula_and_allocate_by_layer():
    from archsearch.propose.importance import lamp_scores
    from archsearch.propose.magnitude import score_masks

    w = torch.tensor([[3.0, -1.0], [2.0, 0.5]])
    sq = {0.5: 0.25, 1.0: 1.0, 2.0: 4.0, 3.0: 9.0}
    tail = {0.5: 14.25, 1.0: 14.0, 2.0: 13.0, 3.0: 9.0}  # sum of w_v^2 over |w_v| >= |w_u|
    expect = torch.tensor([[sq[abs(v)] / tail[abs(v)] for v in row] for row in w.tolist()])
    assert torch.allclose(lamp_scores(w), expect)
    # a layer 100x smaller in scale keeps weights under LAMP; one global |w| threshold empties it
    big, small = torch.arange(1.0, 101.0), torch.arange(1.0, 101.0) / 100
    lamp_masks, _, clamped = score_masks([lamp_scores(big), lamp_scores(small)], 0.5)
    mag_masks, _, _ = score_masks([big, small], 0.5)
    assert lamp_masks[0].sum() == lamp_masks[1].sum() == 50 and not clamped
    assert mag_masks[1].sum() == 1  # only the empty-layer guard's one weight


def test_erk_densities_follow_the_formula_and_meet_the_budget():
    from archsearch.counting import count
    from archsearch.generate import erk_scores, generate

    target = base_spec("resnet20", 10, width=0.5)
    convs = get_family("resnet").convs(target)
    scores = erk_scores(target)
    assert scores == [(c.cin + c.cout + 2 * c.k) / (c.cin * c.cout * c.k * c.k) for c in convs]
    full = count(target).params
    s = generate("erk", target, 0.3 * full, sparse=True, seed=1).spec
    assert abs(count(s).params_nonzero - 0.3 * full) <= 0.01 * 0.3 * full
    dens = np.array([s.masks[c.name].mean() for c in convs])
    capped = dens > 0.999
    ratio = dens[~capped] / np.array(scores)[~capped]  # one scale for every uncapped layer
    assert capped[0] and ratio.max() / ratio.min() < 1.05  # the stem (3 inputs) caps at dense
    with pytest.raises(ArchsearchError, match="sparsity baseline"):
        generate("erk", target, 0.3 * full)


def test_methods_refuse_what_they_cannot_do():
    for kw, msg in ((dict(name="l1norm-preresnet56-c10"), "does not apply to the preresnet family"),
                    (dict(name="l1norm-resnet20-c10", variant="A"), "no variant 'A' for resnet20"),
                    (dict(name="l1norm-resnet20-c10", stage_ratios=[0.5]), "3 stages"),
                    (dict(name="l1norm-resnet20-c10", skip=["layer4.0.conv1"]), "not a channel group"),
                    (dict(name="l1norm-resnet56-c10.A", ratio=0.3), "fixes the ratios"),
                    (dict(name="magnitude-vgg16-c10", variant="A"), "one global threshold"),
                    (dict(name="l1norm-resnet56-c10.B", variant="A"), "names variant B"),
                    (dict(name="thinet-resnet56-c10.A"), "no named variants"),
                    (dict(name="sss-resnet8-c10"), "no removable block")):
        name = kw.pop("name")
        with pytest.raises(ArchsearchError, match=msg):
            resolve_settings(name, **kw)
    with pytest.raises(ArchsearchError, match="plain name"):
        parse("l1norm-resnet56-c10.A-1")


def test_sfp_zeroes_the_lowest_l2_filters_each_epoch_and_proposes_the_rest():
    from archsearch.propose.sfp import SoftFilterZeroing, pruned_count

    _, prop, st, _, base = resolve_settings("sfp-resnet20-digits", ratio=0.3, width=1.0)
    hook = next(h for h in prop.hooks(base, st) if isinstance(h, SoftFilterZeroing))
    model = build(base)
    modules = dict(model.named_modules())
    convs = [c.name for c in get_family("resnet").convs(base)]
    assert hook.convs == convs  # every conv, as the original's layer_begin..layer_end
    for epoch in range(2):  # the weights move between epochs: each time the then-lowest go
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.add_(torch.randn_like(m.weight) * 0.1)
        norms = {n: modules[n].weight.detach().flatten(1).norm(dim=1).clone() for n in convs}
        hook.epoch_end(model, epoch)
        for n in convs:
            k = pruned_count(len(norms[n]), 0.3)
            assert hook.zeroed[n] == sorted(torch.argsort(norms[n])[:k].tolist())
            assert (modules[n].weight.flatten(1).abs().sum(1) == 0).sum() == k
    assert pruned_count(16, 0.3) == 4 and pruned_count(64, 0.3) == 19  # int(16 * (1 - 0.7)), int(64 * 0.3)
    pruned = prop.prune(model, base, st)
    assert pruned.spec.widths == [n - pruned_count(n, 0.3) for n in base.widths]
    assert set(pruned.info["soft_zeroed_outside_groups"]) == set(convs) - {g.name for g in get_family("resnet").groups(base)}


def test_lottery_rounds_compound_and_rewind_to_the_saved_init(small_digits, tmp_path, monkeypatch):
    import archsearch.propose.lottery as lot
    from archsearch.propose.lottery import initial_state, prune_alive

    # the compound sparsity, on weights alone: R rounds of p leave alive_{r+1} = alive_r - int(alive_r p) - 1
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(64, 32, 3, 3, generator=gen), torch.randn(10, 64, 3, 3, generator=gen) * 0.5]
    masks = None
    alive = total = sum(w.numel() for w in ws)
    for _ in range(4):
        masks, _, clamped = prune_alive(ws, masks, 0.3)
        alive -= int(alive * 0.3) + 1
        assert sum(int(m.sum()) for m in masks) == alive and not clamped
    assert abs((1 - alive / total) - (1 - 0.7 ** 4)) < 1e-3
    # a run: 2 rounds of training, the ticket is the saved init under the final mask
    kw = dict(preset="tiny", width=0.125, epochs=1, workdir=tmp_path, device="cpu", batch_size=32, rounds=2, ratio=0.5)
    starts, real_train = [], lot.train
    monkeypatch.setattr(lot, "train", lambda spec, *a, **k: starts.append((spec, k["init_state"])) or real_train(spec, *a, **k))
    p = propose("lottery-vgg11-digits", small_digits, **kw)
    run = Path(p.run_dir)
    init = torch.load(run / "init.pt", weights_only=True)
    ticket = torch.load(run / "ticket_init.pt", weights_only=True)
    for k, v in initial_state(p.base_spec, 0).items():
        assert torch.equal(init[k], v)  # the saved init is what train() started round 0 from
    for name, m in p.spec.masks.items():
        mt = torch.from_numpy(m)
        assert torch.equal(ticket[f"{name}.weight"], init[f"{name}.weight"] * mt)
    kept = sum(int(m.sum()) for m in p.spec.masks.values())
    total = sum(m.size for m in p.spec.masks.values())
    assert abs(kept / total - 0.25) < 0.01 and [r["round"] for r in p.info["rounds"]] == [0, 1]
    assert p.info["rounds"][1]["trained_density"] == pytest.approx(0.5, abs=0.01)
    # round 1 started from the rewound init: the init under the mask it trained with
    (spec0, start0), (spec1, start1) = starts
    assert start0 is None and spec0.masks is None
    for name, m in spec1.masks.items():
        assert torch.equal(start1[f"{name}.weight"], init[f"{name}.weight"] * torch.from_numpy(m))
    assert abs(sum(m.sum() for m in spec1.masks.values()) / sum(m.size for m in spec1.masks.values()) - 0.5) < 0.01
    again = propose("lottery-vgg11-digits", small_digits, progress=lambda st: pytest.fail("reused"), **kw)
    assert again.reused
    with pytest.raises(ArchsearchError, match="rounds"):
        resolve_settings("lottery-vgg11-digits", rounds=0)
    with pytest.raises(ArchsearchError, match="prunes once"):
        resolve_settings("magnitude-vgg11-digits", rounds=3)


@pytest.mark.parametrize("method,arch", [("thinet", "vgg11"), ("regression", "vgg11"), ("thinet", "preresnet29"),
                                         ("regression", "resnet20")])
def test_reconstruction_methods_drop_the_channels_the_next_layer_ignores(method, arch, small_digits):
    """Every group's reader ignores a known set of its input channels (zero weights): those are
    the ones removed, and the pruned net computes what the full net computes."""
    from archsearch.propose.reconstruct import consumer_inputs, consumers

    _, prop, st, _, base = resolve_settings(f"{method}-{arch}-digits", ratio=0.5, width=0.25)
    torch.manual_seed(0)
    model = build(base).eval()
    modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(1)
    expect = []
    with torch.no_grad():
        for m in model.modules():  # every BN output positive almost surely: no channel is dead on the data
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.1, 0.3, generator=gen)
                m.bias.uniform_(1.0, 1.5, generator=gen)
                m.reset_running_stats()
                m.momentum = None  # a cumulative average: one pass calibrates it
        model.train()
        model(torch.from_numpy(small_digits.x_train[:256]).permute(0, 3, 1, 2).float() / 255 * 4 - 2)
        model.eval()
        for width, reader in zip(base.widths, consumers(base)):
            ignored = torch.randperm(width, generator=gen)[: width - int(width * 0.5)]
            modules[reader].weight[:, ignored] = 0
            expect.append(sorted(set(range(width)) - set(ignored.tolist())))
    x = torch.from_numpy(small_digits.x_train[:16]).permute(0, 3, 1, 2).float() / 255 * 4 - 2
    with torch.no_grad():
        full = model(x)
        seen = consumer_inputs(model, base, small_digits, 256)
    pruned = prop.prune(model, base, st, small_digits)
    fam = get_family(base.family)
    for g, e, w, reader in zip(fam.groups(base), expect, pruned.spec.widths, consumers(base)):
        assert w == len(e), g.name
        x_in = seen[reader].transpose(0, 1).flatten(1)
        dead = set((x_in.abs().sum(1) == 0).nonzero().flatten().tolist())  # a channel that is 0 on every sample
        kept = pruned.spec.selected[g.name] if g.kind == "select" else None
        if kept is not None:  # removed: the ignored ones, or (ties at 0) a dead one in their place
            assert set(range(len(x_in))) - set(kept) <= (set(range(len(x_in))) - set(e)) | dead, g.name
            assert not dead and sorted(kept) == e or dead, g.name
    small = build(pruned.spec).eval()
    small.load_state_dict(pruned.state)
    with torch.no_grad():
        assert torch.allclose(small(x), full, atol=1e-3, rtol=1e-3)
    if method == "regression":
        assert max(pruned.info["reconstruction_error"]) < 1e-4


@pytest.mark.parametrize("arch", ["resnet20", "preresnet29"])
def test_sss_removes_the_zero_scale_blocks_and_the_rest_computes_the_same(arch):
    from archsearch.propose.sss import SCALE, BlockScales, fold_scales

    _, prop, st, _, base = resolve_settings(f"sss-{arch}-digits", width=0.25)
    layout = get_family(base.family).block_layout(base.depth)
    hook = prop.hooks(base, st)[0]
    assert isinstance(hook, BlockScales) and hook.gamma == 1e-3
    torch.manual_seed(0)
    model = build(base).eval()
    hook.attach(model)
    rem = [i for i, b in enumerate(layout) if b.removable]
    zero = rem[::3]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for i, p in enumerate(hook.scales):
            p.fill_(0.0 if i in zero else float(torch.rand(1, generator=gen)) + 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.bias.normal_(0, 0.1, generator=gen)
        x = torch.randn(4, 3, 32, 32, generator=gen)
        full = model(x)
    state, lams = fold_scales(model.state_dict(), [b.branch for b in layout])
    assert not any(k.endswith(SCALE) for k in state)
    clean = build(base).eval()
    clean.load_state_dict(state)
    pruned = prop.remove(clean, base, len(zero) / len(rem), lams)
    assert pruned.info["removed"] == [layout[i].name for i in zero]
    assert pruned.spec.blocks == [i not in zero for i in range(len(layout))]
    small = build(pruned.spec).eval()
    small.load_state_dict(pruned.state)
    with torch.no_grad():
        assert torch.allclose(small(x), full, atol=1e-5)
    # the regulariser: gamma x sign(lambda) joins each scale's gradient
    for p in hook.scales:
        p.grad = torch.zeros_like(p)
    hook.after_backward(model)
    assert all(float(p.grad) == pytest.approx(1e-3 * float(torch.sign(p.detach()))) for p in hook.scales)
    with pytest.raises(ArchsearchError, match="does not apply to the vgg family"):
        resolve_settings("sss-vgg16-c10")


# every method on every family it supports: tests/test_propose_registry.py (driven by the registry)


def test_channel_proposals_keep_the_structured_winning_ticket(small_digits, tmp_path):
    """The structured lottery (cifar/lottery-ticket/l1-norm-pruning): the initial weights of the
    very channels the proposal kept, so the pruned net can be trained from them."""
    from archsearch.propose import initial_state

    p = propose("l1norm-vgg11-digits", small_digits, preset="tiny", width=0.25, epochs=1, workdir=tmp_path,
                device="cpu", batch_size=64, train_subset=128, ratio=0.5)
    run = Path(p.run_dir)
    ticket = torch.load(run / "ticket_init.pt", weights_only=True)
    pruned = torch.load(run / "pruned_model.pt", weights_only=True)
    trained = torch.load(next(tmp_path.glob("_base/*/seed0/model.pt")), weights_only=True)
    init = initial_state(p.base_spec, 0)
    assert p.info["ticket_init"] == "ticket_init.pt"
    # a method that trains its base net plainly too shares it: no second training
    m = propose("magnitude-vgg11-digits", small_digits, preset="tiny", width=0.25, epochs=1, workdir=tmp_path,
                device="cpu", batch_size=64, train_subset=128, progress=lambda st: pytest.fail("trained again"))
    assert m.base_acc == p.base_acc and len(list(tmp_path.glob("_base/*/seed0"))) == 1
    s = propose("slimming-vgg11-digits", small_digits, preset="tiny", width=0.25, epochs=1, workdir=tmp_path,
                device="cpu", batch_size=64, train_subset=128)  # BN-L1 training: a base of its own
    assert len(list(tmp_path.glob("_base/*/seed0"))) == 2 and not s.reused
    prev = None
    for c in get_family("vgg").convs(p.base_spec):
        w = f"{c.name}.weight"
        rows = [int((trained[w].flatten(1) == r).all(1).nonzero()[0]) if prev is None else
                int((trained[w][:, prev].flatten(1) == r).all(1).nonzero()[0]) for r in pruned[w].flatten(1)]
        cols = slice(None) if prev is None else prev
        assert torch.equal(ticket[w], init[w][rows][:, cols])
        prev = rows


def test_lottery_late_resetting_rewinds_to_the_snapshot_epoch(small_digits, tmp_path, monkeypatch):
    """--rewind-epoch k: the first round keeps the weights after epoch k (the snapshot equals a
    run stopped there), later rounds start from them at epoch k and train the rest."""
    import archsearch.propose.lottery as lot
    from archsearch.propose.lottery import Snapshot
    from archsearch.train import make_schedule, train

    # the snapshot hook: after epoch 1 of a 1-epoch run, the snapshot is the trained model
    spec = base_spec("vgg11", 10, width=0.125)
    train(spec, small_digits, make_schedule("tiny", epochs=1, batch_size=64), device="cpu", out_dir=tmp_path / "one",
          hooks=[Snapshot(1, tmp_path / "snap.pt")])
    snap = torch.load(tmp_path / "snap.pt", weights_only=True)
    final = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    assert all(torch.equal(snap[k], final[k]) for k in final)
    calls, real_train = [], lot.train
    monkeypatch.setattr(lot, "train", lambda spec, *a, **k: calls.append({**k, "spec": spec}) or real_train(spec, *a, **k))
    kw = dict(preset="tiny", width=0.125, epochs=3, workdir=tmp_path / "w", device="cpu", batch_size=64, rounds=2,
              ratio=0.5, rewind_epoch=1, train_subset=128)
    p = propose("lottery-vgg11-digits", small_digits, **kw)
    run = Path(p.run_dir)
    rewind = torch.load(run / "rewind.pt", weights_only=True)
    assert [c["start_epoch"] for c in calls] == [0, 1]
    for name, m in calls[1]["spec"].masks.items():  # round 1 trains the first mask, from the epoch-1 weights
        assert torch.equal(calls[1]["init_state"][f"{name}.weight"], rewind[f"{name}.weight"] * torch.from_numpy(m))
    ticket = torch.load(run / "ticket_init.pt", weights_only=True)
    for name, m in p.spec.masks.items():  # the ticket: the final mask on the same weights
        assert torch.equal(ticket[f"{name}.weight"], rewind[f"{name}.weight"] * torch.from_numpy(m))
    r1 = json.loads((run / "round1" / "result.json").read_text())
    assert [h["epoch"] for h in r1["history"]] == [2, 3] and p.info["rewind_epoch"] == 1
    with pytest.raises(ArchsearchError, match="rewind-epoch"):
        resolve_settings("lottery-vgg11-digits", epochs=3, rewind_epoch=3)
    with pytest.raises(ArchsearchError, match="prunes once"):
        resolve_settings("magnitude-vgg11-digits", rewind_epoch=1)


def test_reconstruction_judges_each_group_on_the_partly_pruned_net(small_digits):
    """Groups go one after another: the second group's reader sees the net with the first
    group pruned (its reader no longer reads the removed channels); the original net's inputs
    come alongside, for He et al.'s target."""
    import copy

    from archsearch.propose.reconstruct import consumers, prune_by_readers, sample_images, weight_matrix

    base = base_spec("vgg11", 10, 0.25)
    torch.manual_seed(0)
    model = build(base).eval()
    original = copy.deepcopy(model)
    seen = []

    def choose(i, layer, x, x_orig, n_keep):  # keep the first n_keep channels, weights unchanged
        seen.append((x.clone(), x_orig.clone()))
        k = np.zeros(x.shape[1], dtype=bool)
        k[:n_keep] = True
        return k, weight_matrix(layer)[:, :n_keep], None

    ratios = [0.5] * len(base.widths)
    prune_by_readers(model, base, small_digits, ratios, 64, choose)
    readers = consumers(base)
    images = sample_images(small_digits, 64)
    grab = {}
    by_hand = copy.deepcopy(original)
    with torch.no_grad():
        by_hand.get_submodule(readers[0]).weight[:, base.widths[0] // 2:] = 0  # group 0 pruned, nothing else
        h = by_hand.get_submodule(readers[1]).register_forward_pre_hook(lambda m, inp: grab.setdefault("x", inp[0]))
        by_hand(images)
        h.remove()
        g2 = {}
        h = original.get_submodule(readers[1]).register_forward_pre_hook(lambda m, inp: g2.setdefault("x", inp[0]))
        original(images)
        h.remove()
    torch.testing.assert_close(seen[0][0], seen[0][1])  # the first group: nothing pruned before it
    torch.testing.assert_close(seen[1][0], grab["x"])
    torch.testing.assert_close(seen[1][1], g2["x"])
    assert not torch.allclose(seen[1][0], seen[1][1])
