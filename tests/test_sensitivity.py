"""`archsearch sensitivity`: one unit pruned at a time, tested without retraining (Li et al. 2017,
Sec. 4.4): the known-answer pruning rule, the derivation of a pattern, the outputs, resume, and
bad input as one line and exit 2. ResNet-56 on digits, a 1-epoch base net on 128 images."""

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import run

# the scale of every run here: ResNet-56 at width 0.25, 1 epoch on 128 training images
SMALL = dict(preset="tiny", epochs=1, train_subset=128)
CLI_SMALL = ["--preset", "tiny", "--epochs", "1", "--train-subset", "128"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One proposals folder for the module: the base net trains once, on first use."""
    return tmp_path_factory.mktemp("proposals")


def _resnet56():
    from archsearch.names import parse_target

    return parse_target("resnet56-digits").base_spec(0.25)


# -- pure functions -------------------------------------------------------------------------------
def test_units_by_group_and_by_stage_cover_every_group_once():
    from archsearch.archs import get_family
    from archsearch.sensitivity import units

    base = _resnet56()
    groups = get_family(base.family).groups(base)
    by_group, by_stage = units(base, "group"), units(base, "stage")
    assert [u.name for u in by_group] == [g.name for g in groups] and len(by_group) == 27  # 3 stages x 9 blocks
    assert [u.name for u in by_stage] == ["stage1", "stage2", "stage3"]
    assert sorted(i for u in by_stage for i in u.groups) == list(range(27))
    assert all(groups[i].stage + 1 == u.stage for u in by_stage for i in u.groups)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.9])
def test_pruning_a_unit_keeps_int_n_1_minus_r_filters_with_the_largest_l1_norms(ratio):
    """Li et al. keep a layer's filters of largest sum |W|; l1norm's rule: int(n x (1 - r)), at least 1."""
    from archsearch.archs import build, get_family
    from archsearch.propose import get_proposer
    from archsearch.sensitivity import prune_unit, units

    base = _resnet56()
    torch.manual_seed(0)
    model = build(base).eval()
    scores = get_proposer("l1norm").criterion(model, base)
    unit = units(base, "group")[20]  # layer3.2.conv1: 16 filters at width 0.25
    (g,) = unit.groups
    pruned = prune_unit(model, base, scores, unit, ratio)
    w = dict(model.named_modules())[unit.name].weight.detach()
    n = w.shape[0]
    l1 = w.abs().sum(dim=(1, 2, 3))
    expect = int(n * (1 - ratio))
    assert pruned.spec.widths[g] == expect
    assert [k for i, k in enumerate(pruned.spec.widths) if i != g] == [k for i, k in enumerate(base.widths) if i != g]
    kept = np.flatnonzero(pruned.keep[g])
    assert sorted(kept.tolist()) == sorted(torch.argsort(l1, descending=True)[:expect].tolist())
    assert torch.equal(pruned.state[f"{unit.name}.weight"], w[torch.as_tensor(kept)])


def test_ratios_outside_0_1_are_refused():
    from archsearch.errors import ArchsearchError
    from archsearch.sensitivity import check_ratios

    assert check_ratios([0.5, 0.1, 0.5]) == (0.1, 0.5)
    for bad in ([1.5], [0.0], [1.0], [math.nan], [-0.1], []):
        with pytest.raises(ArchsearchError):
            check_ratios(bad)


def test_derive_takes_each_units_largest_ratio_within_the_threshold():
    from archsearch.sensitivity import Unit, derive, group_ratios

    us = [Unit("a", 1, (0,)), Unit("b", 1, (1,)), Unit("c", 2, (2, 3))]
    table = [{"unit": u, "ratio": r, "drop": d} for u, r, d in [
        ("a", 0.3, 0.2), ("a", 0.6, 1.0), ("a", 0.9, 5.0),   # a drop equal to the threshold counts
        ("b", 0.3, 1.5), ("b", 0.6, 3.0), ("b", 0.9, 9.0),   # sensitive everywhere: skipped
        ("c", 0.3, 0.0), ("c", 0.6, 0.5), ("c", 0.9, 0.9)]]
    assert derive(table, us, 1.0) == {"a": 0.6, "b": 0.0, "c": 0.9}
    assert derive(table, us, 1.0, max_ratio=0.6) == {"a": 0.6, "b": 0.0, "c": 0.6}
    assert group_ratios(us, {"a": 0.6, "b": 0.0, "c": 0.9}, 4) == [0.6, 0.0, 0.9, 0.9]


# -- the driver -----------------------------------------------------------------------------------
def _analysis(workdir, tmp_path, **kw):
    from archsearch.sensitivity import prepare

    args = dict(by="stage", ratios=(0.5, 0.9), test_images=50, workdir=str(workdir), out=str(tmp_path / "sens"),
                library=str(tmp_path / "lib"), device="cpu", **SMALL)
    return prepare("l1norm-resnet56-digits", **{**args, **kw})


def test_ratio_0_is_the_unpruned_net_and_l1norms_own_prune_gives_the_derived_widths(workdir, tmp_path):
    from archsearch import sensitivity as S
    from archsearch.train import evaluate

    a = _analysis(workdir, tmp_path)
    m = S.measure(a)
    tb = m.base
    u = a.units[1]
    zero = S.prune_unit(tb.model, tb.spec, m.scores, u, 0.0)
    assert zero.spec.widths == tb.spec.widths
    acc = evaluate(zero.spec, zero.state, a.data, "cpu", tta_flip=tb.schedule.tta_flip, indices=a.test_indices)
    assert acc == m.unpruned == m.points[(S.UNPRUNED, 0.0)]["acc"]
    # the derived per-group ratios through l1norm's own path (its predefined per-layer ratios)
    d = S.derive_pattern(a, m, "test")
    ratios = S.group_ratios(a.units, d.unit_ratios, len(tb.spec.widths))
    own = tb.method.prune(tb.model, tb.spec, replace(tb.settings, layer_ratios=ratios))
    assert d.pattern["proposals"][0]["widths"] == own.spec.widths
    assert d.pattern["provenance"]["layer_ratios"] == ratios


def test_resume_measures_only_what_the_journal_lacks(workdir, tmp_path, monkeypatch):
    from archsearch import sensitivity as S

    calls = []
    real = S.evaluate

    def counting(*args, **kw):
        calls.append(1)
        if stop_at and len(calls) == stop_at:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a point
        return real(*args, **kw)

    monkeypatch.setattr(S, "evaluate", counting)
    a = _analysis(workdir, tmp_path)
    total = 1 + len(a.units) * len(a.ratios)  # the unpruned net, then 3 stages x 2 ratios
    stop_at = 4
    with pytest.raises(KeyboardInterrupt):
        S.measure(a)
    assert len(S.read_points(a.out / S.JOURNAL)) == 3  # what was measured before Ctrl-C is kept
    calls.clear()
    stop_at = None
    m = S.measure(a)
    assert len(calls) == total - 3 and len(m.points) == total
    calls.clear()
    assert len(S.measure(a).points) == total and calls == []  # all done: nothing measured again
    lines = (a.out / S.JOURNAL).read_text().splitlines()
    (a.out / S.JOURNAL).write_text("\n".join(lines[:-1] + ['{"unit": "stage3", "ratio": 0.9, "kept"']) + "\n")
    S.measure(a)
    assert len(calls) == 1  # a damaged line is measured again
    # more ratios later: only the new ones are measured
    calls.clear()
    S.measure(_analysis(workdir, tmp_path, ratios=(0.5, 0.7, 0.9)))
    assert len(calls) == len(a.units)


def test_cli_writes_the_csv_figure_record_and_a_library_pattern(workdir, tmp_path, monkeypatch):
    from archsearch import patterns as P
    from archsearch.data import load_dataset
    from archsearch.propose import base_run_dir, propose, resolve_settings
    from archsearch.train import Engine

    lib = tmp_path / "lib"
    args = ["sensitivity", "--from", "l1norm-resnet56-digits", *CLI_SMALL, "--by", "stage", "--ratios", "0.5,0.9",
            "--test-images", "50", "--workdir", str(workdir), "--out", str(tmp_path / "sens"), "--library", str(lib),
            "--device", "cpu"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert "eta" in r.stderr and "unpruned" in r.stdout
    (folder,) = (tmp_path / "sens" / "l1norm-resnet56-digits").glob("*/seed0")
    rows = list(csv.DictReader((folder / "sensitivity.csv").open()))
    rec = json.loads((folder / "sensitivity.json").read_text())
    points = [json.loads(line) for line in (folder / "points.jsonl").read_text().splitlines()]
    assert [(x["unit"], float(x["ratio"])) for x in rows] == [(f"stage{k}", r) for k in (1, 2, 3) for r in (0.5, 0.9)]
    by_key = {(p["unit"], p["ratio"]): p for p in points}
    for x in rows:
        p = by_key[(x["unit"], float(x["ratio"]))]
        assert int(x["kept"]) == p["kept"] < int(x["of"]) == p["of"] and int(x["params"]) == p["params"]
        assert float(x["accuracy"]) == pytest.approx(100 * p["acc"])
        assert float(x["drop"]) == pytest.approx(100 * (rec["unpruned_acc"] - p["acc"]))
    assert rec["threshold"] == 1.0 and rec["by"] == "stage" and rec["test_images"] == 50
    assert rec["criterion"] == "filter_norm" and rec["archsearch_version"] and rec["command"].startswith("archsearch ")
    html = (folder / "sensitivity.html").read_text()
    assert "Plotly.newPlot" in html and "stage1" in html and '<script src="http' not in html  # js embedded
    # the pattern: in the library, valid, and what the threshold says
    pat = P.load_pattern(lib / "l1norm-resnet56-digits.sens.json")
    assert pat == json.loads((folder / "l1norm-resnet56-digits.sens.json").read_text())
    assert pat["provenance"]["sensitivity"]["threshold"] == 1.0 and pat["method"] == "l1norm"
    drops = {(x["unit"], float(x["ratio"])): float(x["drop"]) for x in rows}
    for k, unit in enumerate(("stage1", "stage2", "stage3")):
        ok = [ratio for (u, ratio), d in drops.items() if u == unit and d <= 1.0]
        assert rec["unit_ratios"][unit] == max(ok, default=0.0)
    assert pat["provenance"]["layer_ratios"] == [rec["unit_ratios"][f"stage{s + 1}"] for s in pat["stages"]]
    # the base net is extract's: a proposal made now reuses it, without training it again
    pn, prop, st, schedule, base = resolve_settings("l1norm-resnet56-digits", **SMALL)
    base_dir = base_run_dir(workdir, base, "digits", schedule, prop.hooks(base, st), st.train_subset, 0)
    assert rec["base"]["run"] == str(base_dir)
    monkeypatch.setattr(Engine, "run_epoch", lambda *a, **k: pytest.fail("the shared base net trained again"))
    p = propose("l1norm-resnet56-digits", load_dataset("digits"), workdir=workdir, device="cpu", **SMALL)
    assert p.base_acc == rec["base"]["best_acc"]


@pytest.mark.parametrize("args, needle", [
    (["--from", "pruning-resnet56-digits"], "unknown pruning method"),
    (["--from", "l1norm-preresnet56-digits"], "does not apply to the preresnet family"),
    (["--from", "slimming-tv.vgg11-digits"], "no BatchNorm scale"),
    (["--from", "magnitude-resnet56-digits"], "magnitude prunes single weights"),
    (["--from", "snip-resnet56-digits"], "snip prunes single weights"),
    (["--from", "thinet-resnet56-digits"], "no per-channel criterion"),
    (["--from", "l1norm-resnet56-digits.A"], "variant A"),
    (["--from", "l1norm-resnet56-digits", "--ratios", "1.5"], "--ratios"),
    (["--from", "l1norm-resnet56-digits", "--ratios", "0.5,nan"], "--ratios"),
    (["--from", "l1norm-resnet56-digits", "--ratios", "0"], "--ratios"),
    (["--from", "l1norm-resnet56-digits", "--max-ratio", "1"], "--max-ratio"),
    (["--from", "l1norm-resnet56-digits", "--test-images", "3"], "at least one image per class"),
    (["--from", "l1norm-resnet56-c10", "--data-dir", "EMPTY", "--no-download"], "--data-dir"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path):
    args = [str(tmp_path) if a == "EMPTY" else a for a in args]
    r = run("sensitivity", *args, *CLI_SMALL, "--workdir", str(tmp_path / "wd"), "--out", str(tmp_path / "out"),
            "--library", str(tmp_path / "lib"))
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert not (tmp_path / "wd").exists()  # refused before anything trained
