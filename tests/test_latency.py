"""Budgets on several measures, and latency budgets: the budget syntax, the per-layer latency
table (bucketed, interpolated, cached), the solver on two bounds, `transfer --by latency`
checked end to end, `archsearch profile`, and the one-line errors.

Most tests replace the clock with a known cost per layer (`fake_layer`), so the table's
arithmetic is checked exactly and no test depends on this machine's timing noise; the
smoke tests at the end time real layers."""

import json
import math
import sys
from pathlib import Path

import pytest
from torch import nn

import archsearch.latency as L
from archsearch.archs import base_spec, get_family
from archsearch.budget import Meter
from archsearch.counting import count
from archsearch.errors import ArchsearchError
from archsearch.generate import generate
from archsearch.measures import Budget, LatencyMeasure, parse_budget, parse_budgets
from helpers import make_pattern, run

OVERHEAD, SLOPE = 3e-5, 1.25  # the fake net's cost: what its layers cost alone, times SLOPE, plus OVERHEAD


def layer_cost(kind, cin, cout, hw, k):
    """A cost a + b·in + c·out + d·in·out per conv and linear layer (what bilinear interpolation
    between bucket points reproduces exactly), and linear in the width for the others."""
    if kind == "conv":
        return 1e-6 * (1 + 0.01 * cin + 0.02 * cout + 2e-4 * cin * cout * k * k * hw * hw / 1024)
    if kind == "linear":
        return 1e-6 * (1 + 1e-3 * cin * cout)
    return 1e-7 * (1 + cout * hw * hw / 100)


def fake_layer(module, shape, measure):
    if isinstance(module, nn.Conv2d):
        return layer_cost("conv", module.in_channels, module.out_channels, shape[-1], module.kernel_size[0])
    if isinstance(module, nn.Linear):
        return layer_cost("linear", module.in_features, module.out_features, 1, 1)
    k = getattr(module, "kernel_size", 1)
    return layer_cost("other", 0, shape[1], shape[-1] // (k if isinstance(k, int) else k[0]), 1)


def fake_net(spec, measure):
    return OVERHEAD + SLOPE * sum(layer_cost(op.kind, op.cin, op.cout, op.hw, op.k)
                                  for op in get_family(spec.family).ops(spec))


@pytest.fixture
def fake_clock(monkeypatch, tmp_path):
    monkeypatch.setenv("ARCHSEARCH_LATENCY_CACHE", str(tmp_path / "latency"))
    monkeypatch.setattr(L, "time_module", fake_layer)
    monkeypatch.setattr(L, "measure_spec", fake_net)  # every caller looks it up there
    return tmp_path / "latency"


def narrowed(full, f):
    return full.replace(widths=[max(1, int(round(w * f))) for w in full.widths], base_widths=full.widths)


# -- the budget syntax ------------------------------------------------------------------------------
def test_budgets_are_read_with_units_and_several_bounds():
    assert parse_budgets("0.5M,1M") == [Budget.of(params=5e5), Budget.of(params=1e6)]
    assert [b.get("latency") for b in parse_budgets("1.5ms,800us,0.002s,2", "latency")] == \
        pytest.approx([1.5e-3, 8e-4, 2e-3, 2e-3])
    two = parse_budgets("macs=20M,params=0.5M;macs=40M , params=1M")
    assert two == [Budget.of(macs=2e7, params=5e5), Budget.of(macs=4e7, params=1e6)]
    assert two[0].measures == ("params", "macs") and two[0].single is None
    assert two[0].tag() == "params500K-macs20M" and two[0].describe() == "500K params and 20M macs"
    assert Budget.of(params=5e5).tag() == "500K"  # the tag older runs' folders carry
    assert parse_budget("latency=1.5ms").tag() == "lat1.5ms"
    assert parse_budget(Budget.of(macs=2e7, params=5e5).text()) == Budget.of(macs=2e7, params=5e5)


@pytest.mark.parametrize("text,by,msg", [
    ("flops=2M", "params", "must be one of params, macs, latency"),
    ("1M", "flops", "must be one of"),
    ("params=1M,params=2M", "params", "bounds params twice"),
    ("macs=1M,params", "params", "is not MEASURE=VALUE"),
    ("-1M", "params", "positive finite"),
    ("nan", "params", "positive finite"),
    ("inf", "macs", "positive finite"),
    ("latency=-2ms", "params", "positive finite"),
    ("2 hours", "latency", "is not a number like 1.5ms"),
    ("", "params", "no budgets given"),
])
def test_bad_budgets_are_one_line(text, by, msg):
    with pytest.raises(ArchsearchError, match=msg):
        parse_budgets(text, by)


# -- the solver on several bounds ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["transferred", "uniform", "random"])
@pytest.mark.parametrize("bounds", [dict(params=2e5, macs=5e7), dict(params=2e5, macs=8e6), dict(params=6e4, macs=1e7)])
def test_two_bounds_build_the_largest_net_under_both(kind, bounds):
    full = base_spec("vgg19", 10, width=0.25)
    s = generate(kind, full, Budget.of(**bounds), pattern=make_pattern(), seed=1)
    c = count(s.spec)
    got = {"params": c.params_nonzero, "macs": c.macs_nonzero}
    ratios = {m: got[m] / v for m, v in bounds.items()}
    assert s.binding == max(ratios, key=ratios.get)
    assert abs(ratios[s.binding] - 1) <= 0.01  # within 1% of the bound that binds
    assert all(r <= ratios[s.binding] for r in ratios.values())  # and no further over any other
    other = next(m for m in bounds if m != s.binding)
    assert ratios[other] < 0.99 or math.isclose(ratios[other], ratios[s.binding], rel_tol=0.02)


def test_two_bounds_on_a_sparse_net():
    full = base_spec("vgg16", 10, width=0.25)
    dense = count(full)
    s = generate("transferred", full, Budget.of(params=0.3 * dense.params, macs=0.2 * dense.macs),
                 pattern=make_pattern("sparsity", arch="vgg19"), sparse=True, seed=0)
    c = count(s.spec)
    assert c.params_nonzero <= 0.3 * dense.params * 1.01 and c.macs_nonzero <= 0.2 * dense.macs * 1.01
    assert abs(s.error) <= 0.01 and s.binding in ("params", "macs")


def test_a_bound_no_net_can_meet_is_refused():
    full = base_spec("vgg16", 10, width=0.25)
    with pytest.raises(ArchsearchError, match="below the smallest net"):
        generate("uniform", full, Budget.of(params=2e5, macs=1e3))
    with pytest.raises(ArchsearchError, match="above the full target"):
        generate("uniform", full, Budget.of(params=1e12, macs=1e15))


# -- the latency table -----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["vgg16", "resnet20", "densenet40"])
def test_the_table_interpolates_exactly_between_buckets_and_is_cached(arch, fake_clock):
    full = base_spec(arch, 10, width=0.5)
    table = L.LatencyTable(LatencyMeasure())
    for f in (1.0, 0.61, 0.3):
        net = narrowed(full, f)
        assert table.layer_sum(net, full) == pytest.approx(
            sum(layer_cost(op.kind, op.cin, op.cout, op.hw, op.k) for op in get_family(net.family).ops(net)), rel=1e-9)
        # the calibration line (fitted on two nets measured end to end) gives the net's own latency back
        assert table.estimate(net, full) == pytest.approx(fake_net(net, None), rel=1e-9)
    table.save()
    again = L.LatencyTable(LatencyMeasure())
    assert again.path == table.path and again.entries == table.entries
    again.estimate(narrowed(full, 0.61), full)
    assert again.measured == 0  # all read from the file
    assert L.LatencyTable(LatencyMeasure(threads=2)).path != table.path  # another measure, another table


def test_a_damaged_table_is_measured_again(fake_clock):
    full = base_spec("vgg11", 10, width=0.25)
    table = L.LatencyTable(LatencyMeasure())
    table.estimate(full)
    table.save()
    table.path.write_text("{ not json")
    fresh = L.LatencyTable(LatencyMeasure())
    assert fresh.entries == {} and fresh.estimate(full) == pytest.approx(fake_net(full, None))
    table.path.write_text(json.dumps({"version": 1, "key": {"cpu": "another machine"}, "entries": {"x": 1.0}}))
    assert L.LatencyTable(LatencyMeasure()).entries == {}  # another machine's table is not this one's


def test_latency_bounds_are_solved_on_the_table(fake_clock):
    full = base_spec("vgg19", 10, width=0.25)
    table = L.LatencyTable(LatencyMeasure())
    bound = 0.5 * fake_net(full, None)
    s = generate("transferred", full, Budget.of(latency=bound), pattern=make_pattern(), table=table)
    assert s.binding == "latency" and abs(fake_net(s.spec, None) / bound - 1) <= 0.01
    assert Meter(Budget.of(latency=bound), full, table).costs(s.spec)["latency"] == pytest.approx(s.cost)


# -- transfer --by latency and --budget with two bounds --------------------------------------------------
def test_transfer_by_latency_lands_within_5pct_and_shows_the_table_error(fake_clock, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    full = base_spec("vgg19", 10, width=0.25)
    bounds = [0.3 * fake_net(full, None), 0.6 * fake_net(full, None)]
    text = ",".join(f"{1e3 * b:.6f}ms" for b in bounds)
    r = run("transfer", "--from", "slimming-vgg16-c10", "--to", "vgg19-c10", "--width", "0.25", "--by", "latency",
            "--budget", text, "--baselines", "uniform", "--out", "t")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "t" / "table.json").read_text())
    assert len(rows) == 4 and {r["generator"] for r in rows} == {"transferred", "uniform"}
    for row, bound in zip(rows, [bounds[0]] * 2 + [bounds[1]] * 2):
        assert row["binding"] == "latency"
        assert abs(row["latency_ms"] / (1e3 * bound) - 1) <= 0.05
        assert abs(row["est_error_pct"]) <= 5 and row["latency_est_ms"] > 0
        assert row["params"] > 0 and row["macs"] > 0  # every net measured three ways
        meta = json.loads((tmp_path / row["spec"]).read_text())["meta"]
        assert meta["by"] == "latency" and meta["latency"]["measure"]["threads"] == 1
    assert "est_error_pct" in (tmp_path / "t" / "table.md").read_text()


def test_transfer_with_two_bounds_writes_nets_under_both(fake_clock, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("transfer", "--from", "slimming-vgg16-c10", "--to", "vgg19-c10", "--width", "0.25",
            "--budget", "macs=10M,params=100K;macs=5M,params=200K", "--out", "t")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "t" / "table.json").read_text())
    assert {r["budget"] for r in rows} == {"params100K-macs10M", "params200K-macs5M"}
    for row in rows:
        bound = {"params": 1e5, "macs": 1e7} if row["budget"] == "params100K-macs10M" else {"params": 2e5, "macs": 5e6}
        assert row["params"] <= 1.01 * bound["params"] and row["macs"] <= 1.01 * bound["macs"]
        assert abs(row[row["binding"]] / bound[row["binding"]] - 1) <= 0.01
        assert row["latency_ms"] > 0  # measured, though no bound asked for it
    # the transferred net at 200K params / 5M MACs is bound by its MACs, uniform by its params
    assert {r["generator"]: r["binding"] for r in rows if r["budget"] == "params200K-macs5M"} == \
        {"transferred": "macs", "uniform": "params"}


@pytest.mark.parametrize("args,msg", [
    (["--by", "flops", "--budget", "1M"], "--by must be one of params, macs, latency"),
    (["--budget", "flops=1M"], "must be one of params, macs, latency"),
    (["--budget", "params=-5"], "positive finite"),
    (["--budget", "nan"], "positive finite"),
    (["--by", "latency", "--budget", "1ms", "--no-latency"], "needs a latency measure"),
    (["--budget", "latency=1ms", "--no-latency"], "needs a latency measure"),
    (["--budget", "macs=1K,params=100K"], "below the smallest net"),
])
def test_bad_budgets_on_the_command_line(args, msg, fake_clock, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("transfer", "--from", "slimming-vgg16-c10", "--to", "vgg19-c10", "--width", "0.25", "--out", "t", *args)
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    assert len(r.output.strip().splitlines()) <= 3


def test_a_latency_budget_cannot_shape_a_sparse_net(fake_clock, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("transfer", "--from", "magnitude-vgg16-c10", "--to", "vgg16-c10", "--width", "0.25", "--by", "latency",
            "--budget", "0.1ms", "--out", "t")
    assert r.exit_code == 2 and "runs at its dense net's latency" in r.output, r.output


def test_a_missing_back_end_is_one_line(monkeypatch):
    import importlib.util

    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = run("profile", "vgg11-digits", "--latency-backend", "cuda")
    assert r.exit_code == 2 and "needs a CUDA device" in r.output
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    r = run("profile", "vgg11-digits", "--latency-backend", "onnxruntime")
    assert r.exit_code == 2 and "onnxruntime is not installed" in r.output
    r = run("profile", "vgg11-digits", "--latency-backend", "tpu")
    assert r.exit_code == 2 and "tpu" in r.output


def test_latency_is_a_panel_of_the_efficiency_figure():
    from archsearch.plot import efficiency_figure

    rows = [{"generator": g, "params": p, "macs": 10 * p, "latency_ms": p / 1e5, "final_acc_mean": a,
             "final_acc_std": 0.1, "seeds": 3} for g, p, a in (("uniform", 1e5, 70.0), ("uniform", 2e5, 75.0),
                                                               ("transferred", 1e5, 72.0))]
    fig = efficiency_figure(rows, x="latency")
    uniform = next(t for t in fig.data if t.name == "uniform")
    assert list(uniform.x) == [1.0, 2.0] and "latency" in fig.layout.xaxis.title.text


# -- real clocks ------------------------------------------------------------------------------------------
def test_profile_measures_once_then_reads_the_table(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_LATENCY_CACHE", str(tmp_path))
    first = run("profile", "vgg11-digits", "--width", "0.25", "--latency-repeats", "3")
    assert first.exit_code == 0, first.output
    assert "| conv |" in first.output.replace("| 0 | conv", "| conv") and "measured_ms" in first.output
    assert "points measured now" in first.output and "(0 points measured now)" not in first.output
    again = run("profile", "vgg11-digits", "--width", "0.25", "--latency-repeats", "3")
    assert "(0 points measured now)" in again.output
    fresh = run("profile", "vgg11-digits", "--width", "0.25", "--latency-repeats", "3", "--refresh")
    assert "(0 points measured now)" not in fresh.output


def test_onnxruntime_and_eager_time_a_real_layer():
    pytest.importorskip("onnxruntime")
    shape = (1, 8, 8, 8)
    for backend in ("eager", "onnxruntime"):
        t = L.time_module(nn.Conv2d(8, 8, 3, padding=1), shape, LatencyMeasure(backend, repeats=3, warmup=1))
        assert 0 < t < 1


# -- sweeps -----------------------------------------------------------------------------------------------
def _sweep(tmp_path, name, budget_lines):
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from test_sweep import write_spec

    return write_spec(tmp_path, name, generators='["guided", "uniform"]', fractions="[0.3]", seeds=2,
                      extra=budget_lines).read_text()


@pytest.mark.parametrize("how", ["latency", "two"])
def test_sweeps_take_latency_and_two_bound_budgets(how, fake_clock, tmp_path, monkeypatch):
    from archsearch.sweep.plan import load_study
    from archsearch.sweep.points import plan_budget

    monkeypatch.chdir(tmp_path)
    from archsearch.names import parse_target
    full = parse_target("vgg11-digits").base_spec(0.25)
    if how == "latency":
        text = _sweep(tmp_path, "lat", 'by = "latency"').replace("fractions = [0.3]", "fractions = [0.4, 0.7]")
    else:
        c = count(full)
        text = _sweep(tmp_path, "two", "").replace(
            "fractions = [0.3]", f'budgets = ["macs={0.3 * c.macs:.0f},params={0.5 * c.params:.0f}"]')
    spec = tmp_path / "s.toml"
    spec.write_text(text)
    r = run("sweep", "run", str(spec), "--workers", "1", "--workdir", "w")
    assert r.exit_code == 0, r.output
    study, plan = load_study(str(tmp_path / "w" / "optuna-journal.log"), "lat" if how == "latency" else "two")
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    assert len(done) == 2 * 2 * (2 if how == "latency" else 1)
    for t in done:
        b = plan_budget(plan, t.params["budget"])
        assert t.user_attrs["latency"] > 0  # every trained net measured
        if how == "latency":  # solved and measured at plan time: the net trained is the plan's
            assert abs(t.user_attrs["latency"] / b.get("latency") - 1) <= 0.05
            key = f"channels {t.params['generator']} {t.params['budget']} {t.params['seed']}"
            assert plan["nets"][key]["widths"] == t.user_attrs["widths"]
            other = f"channels {t.params['generator']} {t.params['budget']} {1 - t.params['seed']}"
            assert plan["nets"][other]["widths"] == t.user_attrs["widths"]  # guided, uniform: one net for all seeds
            at_plan = plan["nets"][key]["meta"]["latency"]
            assert abs(at_plan["seconds"] / b.get("latency") - 1) <= 0.05 and at_plan["measure"]["batch"] == 1
        else:
            ratios = [t.user_attrs["params"] / b.get("params"), t.user_attrs["macs"] / b.get("macs")]
            assert max(ratios) == pytest.approx(1, abs=0.01)
    report = (tmp_path / "w" / "report.md").read_text()
    assert "latency_ms" in report


def test_pareto_fronts_keep_the_points_nothing_beats():
    from archsearch.plot import pareto_front

    pts = [(1.0, 70.0), (2.0, 69.0), (3.0, 75.0), (3.0, 74.0), (4.0, 75.0), (5.0, 80.0)]
    assert pareto_front(pts) == [0, 2, 5]
    assert pareto_front([]) == [] and pareto_front([(1.0, 50.0)]) == [0]


def test_the_efficiency_figure_has_a_panel_per_measure_and_marks_fronts():
    from archsearch.plot import efficiency_figure

    rows = [{"generator": g, "kind": "channels", "params": p, "macs": m, "latency_ms": l, "final_acc_mean": a,
             "final_acc_std": 0.2, "seeds": 3}
            for g, p, m, l, a in (("uniform", 1e5, 2e6, 0.5, 70.0), ("uniform", 2e5, 4e6, 0.7, 69.0),
                                  ("uniform", 3e5, 6e6, 0.9, 75.0), ("transferred", 1e5, 7e6, 0.8, 72.0))]
    fig = efficiency_figure(rows, x="all")
    assert [fig.layout[f"xaxis{i}"].title.text for i in ("", 2, 3)] == \
        ["parameters (non-zero)", "MACs per image", "latency (ms, measured)"]
    uniform = [t for t in fig.data if t.legendgroup == "uniform"]
    points, line = uniform[0], uniform[1]
    assert list(points.marker.symbol) == ["circle", "circle-open", "circle"]  # 69% at 200K is beaten by 70% at 100K
    assert list(line.x) == [1e5, 3e5]
    with pytest.raises(ArchsearchError, match="latency_ms"):
        efficiency_figure([{k: v for k, v in r.items() if k != "latency_ms"} for r in rows], x="latency")


@pytest.mark.parametrize("fast_every,want", [(8, 8), (4, 4), (None, 1)])
def test_round_auto_picks_the_finest_multiple_the_table_shows_faster(fast_every, want, fake_clock, monkeypatch):
    """A back end whose convs run 20% faster when both widths are multiples of `fast_every`
    (vectorised blocks), and one whose time grows smoothly (None: no rounding)."""
    def blocked(module, shape, measure):
        t = fake_layer(module, shape, measure)
        if fast_every and isinstance(module, nn.Conv2d) and module.in_channels % fast_every == 0 and \
                module.out_channels % fast_every == 0:
            t *= 0.8
        return t

    monkeypatch.setattr(L, "time_module", blocked)
    auto = L.auto_round(base_spec("vgg16", 10, width=0.25), L.LatencyTable(LatencyMeasure()))
    assert auto.multiple == want, auto.why


def test_transfer_round_auto_rounds_the_widths(fake_clock, tmp_path, monkeypatch):
    def blocked(module, shape, measure):
        t = fake_layer(module, shape, measure)
        return t * 0.8 if isinstance(module, nn.Conv2d) and module.out_channels % 8 == 0 else t

    monkeypatch.setattr(L, "time_module", blocked)
    monkeypatch.chdir(tmp_path)
    r = run("transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--width", "0.5", "--budget", "300K",
            "--round", "auto", "--out", "t")
    assert r.exit_code == 0 and "--round auto: 8" in r.output, r.output
    for row in json.loads((tmp_path / "t" / "table.json").read_text()):
        assert all(w % 8 == 0 for w in json.loads((tmp_path / row["spec"]).read_text())["widths"])
    r = run("transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--budget", "300K", "--round", "auto",
            "--no-latency", "--out", "t2")
    assert r.exit_code == 2 and "--round auto reads the latency table" in r.output
    r = run("transfer", "--from", "slimming-vgg16-c10", "--to", "vgg16-c10", "--budget", "300K", "--round", "fast")
    assert r.exit_code == 2 and "fast" in r.output


def test_a_budget_only_some_generators_can_meet_is_one_line_after_the_table(fake_clock, tmp_path, monkeypatch):
    """One (generator, budget) that cannot be made: the table is written with the failure in its
    column, then one line naming the budget, and exit 2."""
    gen = sys.modules["archsearch.generate"]  # the module (generate_checked calls its generate)
    real = gen.generate

    def picky(kind, target, budget, **kw):
        if kind == "transferred" and budget.get("latency") < 0.45 * fake_net(target, None):
            raise ArchsearchError("cannot meet it (a stand-in failure)")
        return real(kind, target, budget, **kw)

    monkeypatch.setattr(gen, "generate", picky)
    monkeypatch.chdir(tmp_path)
    r = run("transfer", "--from", "slimming-vgg16-c10", "--to", "vgg19-c10", "--width", "0.25", "--by", "latency",
            "--fractions", "0.3,0.6", "--out", "t")
    rows = json.loads((tmp_path / "t" / "table.json").read_text())
    assert [bool(row.get("failure")) for row in rows] == [True, False, False, False], rows
    assert r.exit_code == 2 and "1 of 4 (generator, budget) could not be generated" in r.output, r.output
    assert "latency: cannot meet it" in r.output and "Traceback" not in r.output
