"""Pruning at initialisation (snip, grasp, synflow): known answers against direct
transcriptions of each original's score rule and cut, the commands end to end, bad input.

Each `*_original` function below follows the original code line by line (file and lines
named in it), adapted only where the framework differs (TensorFlow -> torch for SNIP; the
masked layers of Synaptic-Flow as a parametrisation). The one deviation of archsearch kept
in them: what is pruned is the convs of `Family.convs` (the originals also prune the linear
layers, and SNIP the biases).
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from archsearch.archs import build, get_family
from archsearch.propose import resolve_settings
from archsearch.propose.at_init import keep_top, prune_at_or_below
from archsearch.propose.grasp import grasp_masks, grasp_scores
from archsearch.propose.snip import snip_masks, snip_scores
from archsearch.propose.synflow import synflow_masks
from helpers import run


def tiny(arch: str, seed: int = 0):
    """A quarter-width CIFAR-sized net as initialised with `seed`, its base spec and conv names."""
    base = resolve_settings(f"magnitude-{arch}-digits", width=0.25)[-1]
    torch.manual_seed(seed)
    model = build(base)
    return model, base, [c.name for c in get_family(base.family).convs(base)]


def batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


# -- SNIP: namhoonlee/snip-public, snip/model.py ---------------------------------------------------------
def snip_original(net, prunable, x, y, target_sparsity):
    """`get_sparse_mask` (l.62-70) with `normalize_dict` (l.159-163) and `create_sparse_mask`
    (l.172-185); `is_train: False` (prune.py l.10): batch norm on its moving statistics."""
    net = copy.deepcopy(net).eval()
    modules = dict(net.named_modules())
    mask_init = {k: torch.ones_like(modules[k].weight, requires_grad=True) for k in prunable}  # l.59
    w_mask = {f"{k}.weight": mask_init[k] * modules[k].weight for k in prunable}  # apply_mask, l.63
    logits = torch.func.functional_call(net, w_mask, (x,))  # l.64
    loss = torch.mean(F.cross_entropy(logits, y, reduction="none"))  # l.66, softmax_cross_entropy_with_logits
    grads = torch.autograd.grad(loss, [mask_init[k] for k in prunable])  # l.67
    cs = {k: torch.abs(g) for k, g in zip(prunable, grads)}  # l.69
    x_v = torch.cat([cs[k].reshape(-1) for k in prunable])  # vectorize_dict
    x_v_norm = x_v / x_v.sum()  # normalize_dict
    num_params = x_v_norm.shape[0]
    kappa = int(round(num_params * (1. - target_sparsity)))  # threshold_vec
    _, ind = torch.topk(x_v_norm, kappa, sorted=True)
    mask_v = torch.zeros_like(x_v_norm)
    mask_v[ind] = 1.0  # sparse_to_dense
    sizes = [cs[k].numel() for k in prunable]
    return ([v.reshape(cs[k].shape) for k, v in zip(prunable, x_v_norm.split(sizes))],
            [v.reshape(cs[k].shape) for k, v in zip(prunable, mask_v.split(sizes))])


@pytest.mark.parametrize("arch,ratio", [("vgg11", 0.9), ("resnet20", 0.6)])
def test_snip_matches_the_original_rule(arch, ratio):
    model, _, names = tiny(arch)
    x, y = batch(32)
    want_scores, want_masks = snip_original(model, names, x, y, ratio)
    scores = snip_scores(model, names, x, y)
    masks, threshold = snip_masks(scores, ratio)
    for s, w in zip(scores, want_scores):
        torch.testing.assert_close(s, w, rtol=1e-5, atol=1e-12)
    assert all(torch.equal(m, w.bool()) for m, w in zip(masks, want_masks))
    n = sum(m.numel() for m in masks)
    assert sum(int(m.sum()) for m in masks) == int(round(n * (1 - ratio)))
    assert threshold == min(float(s[m].min()) for s, m in zip(scores, masks) if m.any())


# -- GraSP: alecwangcq/GraSP, pruner/GraSP.py ------------------------------------------------------------
def grasp_original(net, ratio, inputs, targets, prunable, seed, T=200):
    """`GraSP()` l.49-155 with its data fetched already (`GraSP_fetch_data`), one iteration,
    `reinit=True`; the threshold is taken over the prunable convs' scores."""
    eps = 1e-10
    keep_ratio = 1 - ratio
    net = copy.deepcopy(net)  # .eval()
    net.zero_grad()
    weights = []
    torch.manual_seed(seed)  # the global generator draws the re-initialised linear layers
    for layer in net.modules():
        if isinstance(layer, nn.Conv2d) or isinstance(layer, nn.Linear):
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
            weights.append(layer.weight)
    grad_w = None
    N = inputs.shape[0]
    outputs = net.forward(inputs[:N // 2]) / T
    loss = F.cross_entropy(outputs, targets[:N // 2])
    grad_w = list(torch.autograd.grad(loss, weights))
    outputs = net.forward(inputs[N // 2:]) / T
    loss = F.cross_entropy(outputs, targets[N // 2:])
    grad_w_p = torch.autograd.grad(loss, weights, create_graph=False)
    for idx in range(len(grad_w)):
        grad_w[idx] += grad_w_p[idx]
    for part in (slice(None, N // 2), slice(N // 2, None)):
        outputs = net.forward(inputs[part]) / T
        loss = F.cross_entropy(outputs, targets[part])
        grad_f = torch.autograd.grad(loss, weights, create_graph=True)
        z = 0
        count = 0
        for layer in net.modules():
            if isinstance(layer, nn.Conv2d) or isinstance(layer, nn.Linear):
                z += (grad_w[count].data * grad_f[count]).sum()
                count += 1
        z.backward()
    grads = {}
    for name, layer in net.named_modules():
        if isinstance(layer, nn.Conv2d) or isinstance(layer, nn.Linear):
            grads[name] = -layer.weight.data * layer.weight.grad  # -theta_q Hg
    all_scores = torch.cat([torch.flatten(x) for x in grads.values()])
    norm_factor = torch.abs(torch.sum(all_scores)) + eps
    conv_scores = torch.cat([torch.flatten(grads[k]) for k in prunable]) / norm_factor
    num_params_to_rm = int(len(conv_scores) * (1 - keep_ratio))
    threshold, _ = torch.topk(conv_scores, num_params_to_rm, sorted=True)
    acceptable_score = threshold[-1]
    return ([grads[k] / norm_factor for k in prunable],
            [((grads[k] / norm_factor) <= acceptable_score).float() for k in prunable])


@pytest.mark.parametrize("arch,ratio", [("vgg11", 0.9), ("resnet20", 0.7)])
def test_grasp_matches_the_original_rule(arch, ratio):
    model, _, names = tiny(arch)
    x, y = batch(20)
    y = torch.sort(y).values  # class by class, as GraSP_fetch_data concatenates them
    want_scores, want_masks = grasp_original(model, ratio, x, y, names, seed=3)
    scores = grasp_scores(model, names, x, y, torch.Generator().manual_seed(3))
    masks, threshold = grasp_masks(scores, ratio)
    for s, w in zip(scores, want_scores):
        torch.testing.assert_close(s, w, rtol=1e-5, atol=1e-9)
    assert all(torch.equal(m, w.bool()) for m, w in zip(masks, want_masks))
    n = sum(m.numel() for m in masks)
    assert sum(int((~m).sum()) for m in masks) == int(n * ratio) - 1  # the highest go, the threshold's stays
    assert all(float(s[~m].min()) > threshold for s, m in zip(scores, masks) if (~m).any())


# -- SynFlow: ganguli-lab/Synaptic-Flow, Pruners/pruners.py and prune.py -----------------------------------
class _Mask(nn.Module):
    """Layers/layers.py's masked conv: the forward uses `weight * weight_mask`."""

    def __init__(self, weight):
        super().__init__()
        self.register_buffer("weight_mask", torch.ones_like(weight))

    def forward(self, w):
        return w * self.weight_mask


def synflow_original(net, prunable, input_dim, compression_density, epochs, double=False):
    """`SynFlow.score` (l.182-211), `Pruner._global_mask` (l.12-29) and `prune_loop` (prune.py
    l.5-24: eval mode, the exponential schedule, global scope); in float32, or with `double` in
    float64 (the `model.double()` of `linearize`, commented out there)."""
    model = copy.deepcopy(net).double() if double else copy.deepcopy(net)
    modules = dict(model.named_modules())
    masked_parameters = []
    for k in prunable:
        parametrize.register_parametrization(modules[k], "weight", _Mask(modules[k].weight))
        masked_parameters.append((modules[k].parametrizations.weight[0].weight_mask,
                                  modules[k].parametrizations.weight.original))
    scores = {}

    def score():
        with torch.no_grad():  # linearize
            signs = {}
            for name, param in model.state_dict().items():
                signs[name] = torch.sign(param)
                param.abs_()
        input = torch.ones([1] + input_dim, dtype=torch.float64 if double else torch.float32)
        output = model(input)
        torch.sum(output).backward()
        for _, p in masked_parameters:
            scores[id(p)] = torch.clone(p.grad * p).detach().abs_()
            p.grad.data.zero_()
        with torch.no_grad():  # nonlinearize
            for name, param in model.state_dict().items():
                param.mul_(signs[name])

    def global_mask(sparsity):
        global_scores = torch.cat([torch.flatten(v) for v in scores.values()])
        k = int((1.0 - sparsity) * global_scores.numel())
        if not k < 1:
            threshold, _ = torch.kthvalue(global_scores, k)
            for mask, param in masked_parameters:
                score = scores[id(param)]
                zero = torch.tensor([0.]).to(mask.device)
                one = torch.tensor([1.]).to(mask.device)
                mask.copy_(torch.where(score <= threshold, zero, one))

    model.train()
    model.eval()
    for epoch in range(epochs):
        score()
        sparse = compression_density ** ((epoch + 1) / epochs)
        global_mask(sparse)
    return [scores[id(p)] for _, p in masked_parameters], [m.clone() for m, _ in masked_parameters]


@pytest.mark.parametrize("arch,ratio,rounds", [("vgg11", 0.95, 8), ("resnet20", 0.9, 5), ("vgg11", 0.5, 1)])
def test_synflow_matches_the_original_rule(arch, ratio, rounds):
    model, _, names = tiny(arch)
    want_scores, want_masks = synflow_original(model, names, [3, 32, 32], 1.0 - ratio, rounds)
    masks, _, scores, dtype = synflow_masks(model, names, (3, 32, 32), ratio, rounds)
    assert dtype == torch.float32  # as the original
    for s, w in zip(scores, want_scores):
        torch.testing.assert_close(s, w, rtol=1e-6, atol=0.0)
    assert all(torch.equal(m, w.bool()) for m, w in zip(masks, want_masks))
    n = sum(m.numel() for m in masks)
    assert abs(sum(int(m.sum()) for m in masks) - n * (1 - ratio)) < 5  # prune_loop's own check


def test_synflow_scores_in_float64_where_float32_overflows():
    model, _, names = tiny("resnet20")
    with torch.no_grad():
        for n in names:
            dict(model.named_modules())[n].weight.mul_(200.0)  # the flow of a deep residual net: above 3.4e38
    masks, _, scores, dtype = synflow_masks(model, names, (3, 32, 32), 0.9, 3)
    assert dtype == torch.float64
    f32_scores, _ = synflow_original(model, names, [3, 32, 32], 0.1, 1)
    assert not any(bool(torch.isfinite(s).any()) for s in f32_scores)  # the original's float32: R = inf, nan scores
    want_scores, want_masks = synflow_original(model, names, [3, 32, 32], 0.1, 3, double=True)
    for s, w in zip(scores, want_scores):
        torch.testing.assert_close(s, w, rtol=1e-12, atol=0.0)
    assert all(torch.equal(m, w.bool()) for m, w in zip(masks, want_masks))


def test_the_cuts_keep_their_counts_and_ties():
    s = [torch.tensor([[3.0, 1.0], [2.0, 1.0]]), torch.tensor([1.0, 5.0, 0.5])]
    keep, thr = keep_top(s, 3)  # the three highest: 5, 3, 2
    assert [k.tolist() for k in keep] == [[[True, False], [True, False]], [False, True, False]] and thr == 2.0
    keep, thr = keep_top(s, 4)  # a tie at 1.0: the earlier position stays
    assert [k.tolist() for k in keep] == [[[True, True], [True, False]], [False, True, False]] and thr == 1.0
    keep, thr = prune_at_or_below(s, 2)  # the 2nd smallest is 1.0: every 1.0 goes with it
    assert [k.tolist() for k in keep] == [[[True, False], [True, False]], [False, True, False]] and thr == 1.0
    assert prune_at_or_below(s, 0) is None


def test_the_original_weights_stay_as_they_were():
    model, _, names = tiny("resnet20")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch(10)
    snip_scores(model, names, x, y)
    grasp_scores(model, names, x, y, torch.Generator().manual_seed(0))
    synflow_masks(model, names, (3, 32, 32), 0.5, 2)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


# -- the commands ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method,own", [("synflow", {"iterations": 100}), ("snip", {"samples": 100}),
                                        ("grasp", {"samples_per_class": 10})])
def test_extract_writes_a_pattern_with_an_honest_record(method, own, tmp_path, monkeypatch):
    """No test pass: the nets are untrained (at chance), and the passes would be most of the cost."""
    import archsearch.propose as proposing
    import archsearch.train as train

    def no_test_pass(*a, **k):
        raise AssertionError("an untrained proposal was tested")

    monkeypatch.setattr(proposing, "evaluate", no_test_pass)
    monkeypatch.setattr(train, "evaluate", no_test_pass)
    monkeypatch.setenv("ARCHSEARCH_PATTERNS", str(tmp_path / "lib"))
    spec = f"{method}-vgg11-digits"
    r = run("extract", "--from", spec, "--preset", "tiny", "--seeds", "1", "--workdir", str(tmp_path / "w"),
            "--library", str(tmp_path / "lib"), "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "scored at initialisation, no training" in r.output and "estimate" not in r.output
    assert "seed 0: scored at initialisation (untrained: not tested)" in r.output and "accuracy not tested" in r.output
    pat = json.loads((tmp_path / "lib" / f"{spec}.json").read_text())
    assert pat["accuracy"] == {}
    assert pat["kind"] == "sparsity" and pat["method"] == method and len(pat["layer_names"]) == 8
    prov = pat["provenance"]
    assert prov["trained_epochs"] == 0 and prov["scale"].startswith("scored at initialisation, no training")
    assert prov["scored_images"] == (0 if method == "synflow" else 100)
    dens = pat["layers"]["density_mean"]
    assert 0 < min(dens) and max(dens) <= 1 and max(dens) - min(dens) > 0.05  # a per-layer choice, not uniform
    rec = json.loads(next(Path(tmp_path / "w").glob(f"{spec}/*/seed0/proposal.json")).read_text())
    assert rec["base_epochs"] == 0 and rec["base_seconds"] == 0
    assert rec["base_acc"] is None and rec["base_final_acc"] is None and rec["pruned_acc"] is None
    assert rec["settings"]["options"] == own and rec["info"]["trained_epochs"] == 0
    assert rec["info"]["images"] == (0 if method == "synflow" else 100)
    assert rec["info"]["batches"] == {"synflow": 0, "snip": 1, "grasp": 2}[method]
    assert "untrained" in rec["info"]["base_acc"] and not (tmp_path / "w" / "_base").exists()  # nothing trained
    kept = sum(d * n for d, n in zip(dens, _conv_sizes(spec)))
    assert abs(kept / sum(_conv_sizes(spec)) - 0.2) < 0.01  # the default ratio, 0.8
    again = run("extract", "--from", spec, "--preset", "tiny", "--seeds", "1", "--workdir", str(tmp_path / "w"),
                "--library", str(tmp_path / "lib"), "--device", "cpu")
    assert again.exit_code == 0 and "[reused]" in again.output, again.output
    shown = run("patterns", "show", str(tmp_path / "lib" / f"{spec}.json"))
    assert shown.exit_code == 0 and "accuracy not tested" in shown.output, shown.output


def test_a_table_tests_an_untrained_proposal(digits, tmp_path):
    """A table sweep's unpruned and pruned rows show the untrained nets' accuracies: asked for."""
    from archsearch.propose import propose

    p = propose("snip-vgg11-digits", digits, preset="tiny", workdir=tmp_path, device="cpu", test_untrained=True)
    assert 0 <= p.base_acc <= 1 and p.base_acc == p.base_final_acc and 0 <= p.pruned_acc <= 1


def _conv_sizes(spec):
    base = resolve_settings(spec, preset="tiny")[-1]
    modules = dict(build(base).named_modules())
    return [modules[c.name].weight.numel() for c in get_family(base.family).convs(base)]


@pytest.mark.parametrize("args, needle", [
    (["--from", "snip-vgg11-digits", "--ratio", "1.5"], "--ratio"),
    (["--from", "synflow-vgg11-digits", "--ratio", "0"], "--ratio"),
    (["--from", "synflow-vgg11-digits", "-o", "iterations=0"], "iterations must be a whole number from 1 to 1000"),
    (["--from", "snip-vgg11-digits", "-o", "samples=5000"], "snip scores one batch of 5000 training images"),
    (["--from", "grasp-vgg11-digits", "--train-subset", "30"], "grasp needs 10 training images of every class"),
    (["--from", "grasp-vgg11-digits", "-o", "samples=10"], "--samples belongs to snip"),
])
def test_bad_input_is_one_line(args, needle, tmp_path):
    r = run("extract", *args, "--preset", "tiny", "--seeds", "1", "--workdir", str(tmp_path / "w"),
            "--library", str(tmp_path / "lib"), "--device", "cpu")
    assert r.exit_code == 2, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in r.output, r.output
    # a refusal of the settings comes before anything; one of the data after extract's header
    assert r.stderr.strip().splitlines()[-1] == errors[0]


def test_the_proposal_is_the_initialisation_under_its_mask(tmp_path):
    from archsearch.data import load_dataset
    from archsearch.propose import initial_state, propose

    p = propose("snip-resnet20-digits", load_dataset("digits"), workdir=tmp_path, preset="tiny", device="cpu", seed=2)
    state = torch.load(Path(p.run_dir) / "pruned_model.pt", weights_only=True)
    init = initial_state(p.base_spec, 2)
    for name, mask in p.spec.masks.items():
        m = torch.from_numpy(np.asarray(mask))
        assert torch.equal(state[f"{name}.weight"], init[f"{name}.weight"] * m)
    assert p.base_epochs == 0 and p.kind == "sparsity" and p.info["threshold"] > 0



# -- channels: a group scores the sum of its weights' scores (DESIGN.md, "Proposers at initialization") --
def channel_sums_direct(scores, base):
    """Per group, channel by channel: the sum of its filters' scores (a conv group: every conv
    writing it, output slice c) or, for a selection group, of the input slices c of the convs
    reading it; None where no conv reads a selection (it keeps every channel)."""
    fam = get_family(base.family)
    convs = [c.name for c in fam.convs(base)]
    wires = fam.wires(base)
    out = []
    for g, width in zip(fam.groups(base), base.widths):
        side = 0 if g.kind == "conv" else 1
        owners = [convs.index(m) for m in convs if wires.get(m, (None, None))[side] == g.name]
        if not owners:
            out.append(None)
            continue
        out.append(torch.tensor([sum(float(scores[i][c].double().sum()) if side == 0 else
                                     float(scores[i][:, c].double().sum()) for i in owners) for c in range(width)],
                                dtype=torch.float64))
    return out


def channel_cut_direct(sums, widths, n_prune, higher_keeps=True):
    """Sort every scored channel by (score, group, channel) and drop the n_prune lowest (the
    highest where higher_keeps is False); a group left empty keeps its best channel."""
    sign = 1.0 if higher_keeps else -1.0
    items = sorted((sign * float(s[c]), g, c) for g, s in enumerate(sums) if s is not None for c in range(len(s)))
    keeps = [[True] * w for w in widths]
    for _, g, c in items[:n_prune]:
        keeps[g][c] = False
    for g, s in enumerate(sums):
        if s is not None and not any(keeps[g]):
            keeps[g][max(range(len(s)), key=lambda c: (sign * float(s[c]), -c))] = True
    return keeps


def tiny_channels(arch, seed=0):
    base = resolve_settings(f"snip_ch-{arch}-digits", width=0.25)[-1]
    torch.manual_seed(seed)
    return build(base), base, [c.name for c in get_family(base.family).convs(base)]


@pytest.mark.parametrize("arch,ratio", [("vgg11", 0.6), ("resnet20", 0.5), ("preresnet20", 0.4),
                                        pytest.param("densenet40", 0.3, marks=pytest.mark.slow)])
def test_snip_and_grasp_channels_sum_the_original_scores(arch, ratio):
    from archsearch.propose.at_init import channel_masks, channel_sums, group_slices

    model, base, names = tiny_channels(arch)
    x, y = batch(10)
    y = torch.sort(y).values
    widths = list(base.widths)
    for want_scores, higher in ((snip_original(model, names, x, y, 0.5)[0], True),
                                (grasp_original(model, 0.5, x, y, names, seed=3)[0], False)):
        sums = channel_sums(want_scores, group_slices(base))
        direct = channel_sums_direct(want_scores, base)
        for s, d in zip(sums, direct):
            assert (s is None) == (d is None) and (s is None or torch.allclose(s, d, rtol=1e-9, atol=1e-15))
        scored = sum(w for w, d in zip(widths, direct) if d is not None)
        keeps, _, clamped = channel_masks(sums, widths, ratio, 0.0, higher_keeps=higher)
        assert [k.tolist() for k in keeps] == channel_cut_direct(direct, widths, int(round(ratio * scored)), higher)
        if arch in ("preresnet20", "densenet40"):  # the last selection feeds the classifier only: kept whole
            assert direct[-1] is None and bool(keeps[-1].all())


class _ChannelMask(nn.Module):
    """A masked conv whose mask zeroes whole channels: `weight * mask` along dim `dim`."""

    def __init__(self, weight, dim):
        super().__init__()
        view = [1] * weight.dim()
        view[dim] = -1
        self.view = view
        self.register_buffer("mask", torch.ones(weight.shape[dim]))

    def forward(self, w):
        return w * self.mask.view(self.view)


def synflow_channels_direct(net, base, names, input_dim, ratio, epochs):
    """SynFlow's `prune_loop` with channel masks: each round the original `score()` (linearize,
    ones in, sum out, |grad x w|), the channel sums, and a cut to the exponential schedule."""
    model = copy.deepcopy(net)
    modules = dict(model.named_modules())
    fam = get_family(base.family)
    wires = fam.wires(base)
    groups = fam.groups(base)
    masks = [torch.ones(w) for w in base.widths]
    owners = []
    for g in groups:
        side = 0 if g.kind == "conv" else 1
        owners.append([(n, side) for n in names if wires.get(n, (None, None))[side] == g.name])
    scored = sum(len(m) for m, o in zip(masks, owners) if o)
    weights = [modules[n].weight for n in names]
    with torch.no_grad():
        for n, w in zip(names, weights):
            modules[n].weight.abs_()  # linearize (kept linear: the signs are not needed for the masks)
        for v in model.state_dict().values():
            v.abs_()
    model.eval()
    dense = [w.detach().clone() for w in weights]
    keeps = None
    for epoch in range(epochs):
        with torch.no_grad():
            for w, d in zip(weights, dense):
                w.copy_(d)
            for m, own in zip(masks, owners):
                for n, side in own:
                    w = modules[n].weight
                    view = [1] * w.dim()
                    view[side] = -1
                    w.mul_(m.view(view))
        model.zero_grad()
        torch.sum(model(torch.ones([1] + input_dim))).backward()
        scores = {n: (modules[n].weight.grad * modules[n].weight).detach().abs() for n in names}
        sums = [None if not own else torch.tensor([sum(float(scores[n][c].double().sum()) if side == 0 else
                                                       float(scores[n][:, c].double().sum()) for n, side in own)
                                                   for c in range(len(m))], dtype=torch.float64)
                for m, own in zip(masks, owners)]
        sparse = (1.0 - ratio) ** ((epoch + 1) / epochs)
        keeps = channel_cut_direct(sums, list(base.widths), int((1.0 - sparse) * scored))
        masks = [torch.tensor(k, dtype=torch.float32) for k in keeps]
    return keeps


@pytest.mark.parametrize("arch,ratio,rounds", [("vgg11", 0.7, 6), ("resnet20", 0.5, 4), ("preresnet20", 0.5, 3)])
def test_synflow_channels_match_a_direct_transcription(arch, ratio, rounds):
    from archsearch.propose.at_init import group_slices
    from archsearch.propose.synflow import synflow_channel_rounds

    model, base, names = tiny_channels(arch)
    want = synflow_channels_direct(model, base, names, [3, 32, 32], ratio, rounds)
    keeps, _, _, _ = synflow_channel_rounds(model, names, group_slices(base), list(base.widths), (3, 32, 32),
                                            ratio, rounds, 0.0, torch.float32)
    assert [k.tolist() for k in keeps] == want
    scored = sum(w for w, o in zip(base.widths, group_slices(base)) if o)
    assert sum(int((~k).sum()) for k in keeps) == int(ratio * scored) or any(sum(k) == 1 for k in want)


@pytest.mark.parametrize("method", ["snip_ch", "grasp_ch", "synflow_ch"])
def test_a_channel_proposal_is_the_initialisation_of_its_kept_channels(method, tmp_path):
    from archsearch.data import load_dataset
    from archsearch.propose import initial_state, propose

    kw = {"options": {"iterations": 5}} if method == "synflow_ch" else {}
    p = propose(f"{method}-resnet20-digits", load_dataset("digits"), workdir=tmp_path, preset="tiny",
                device="cpu", seed=1, **kw)
    assert p.kind == "channels" and p.base_epochs == 0 and p.spec.masks is None
    pruned, total = p.info["pruned_channels"], p.info["total_channels"]
    revived = sum(c["kept"] - c["kept_by_threshold"] for c in p.info["clamped"])  # a group the cut emptied
    assert pruned + revived == int(round(0.5 * total))  # the default ratio, one global cut
    init = initial_state(p.base_spec, 1)
    state = torch.load(Path(p.run_dir) / "pruned_model.pt", weights_only=True)
    for g in get_family(p.base_spec.family).groups(p.base_spec):  # resnet: a block's conv1 -> its conv2
        w, w0 = state[f"{g.name}.weight"], init[f"{g.name}.weight"]
        rows = [next(i for i in range(len(w0)) if torch.equal(r, w0[i])) for r in w]  # the kept filters, as initialised
        assert rows == sorted(set(rows))
        after = g.name.replace("conv1", "conv2")
        assert torch.equal(state[f"{after}.weight"], init[f"{after}.weight"][:, rows])
    assert (Path(p.run_dir) / "ticket_init.pt").exists()


@pytest.mark.parametrize("args, needle", [
    (["--from", "snip_ch-vgg11-digits", "--ratio", "1.5"], "--ratio"),
    (["--from", "synflow_ch-vgg11-digits", "-o", "iterations=0"], "iterations must be a whole number from 1 to 1000"),
    (["--from", "grasp_ch-vgg11-digits", "--train-subset", "30"], "grasp_ch needs 10 training images of every class"),
    (["--from", "snip_ch-vgg11-digits", "--floor", "1.0"], "--floor"),
])
def test_bad_channel_input_is_one_line(args, needle, tmp_path):
    test_bad_input_is_one_line(args, needle, tmp_path)
