"""Pattern extraction from known proposals, schema validation, the library search path."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from archsearch import patterns as P
from archsearch.archs import base_spec
from archsearch.errors import ArchsearchError
from archsearch.propose import Proposal
from archsearch.spec import ArchSpec

REPO = Path(__file__).resolve().parents[1]


def _proposal(seed, widths=None, masks=None, kind="channels", base_acc=0.9, pruned_acc=0.5):
    base = base_spec("vgg11", 10, width=0.25)
    spec = ArchSpec(family="vgg", depth=11, widths=widths or base.widths, stages=base.stages, num_classes=10,
                    base_widths=base.widths, masks=masks)
    settings = {"proposer": "x-vgg11-digits", "ratio": 0.5, "preset": "tiny", "width": 0.25, "floor": 0.0,
                "sparsity": 0.0, "schedule": {"epochs": 3, "batch_size": 64, "lr": 0.05}}
    return Proposal(proposer="x-vgg11-digits", method="x", kind=kind, seed=seed, settings=settings, spec=spec,
                    base_spec=base, base_acc=base_acc, base_final_acc=base_acc, pruned_acc=pruned_acc,
                    info={"threshold": 0.1, "clamped": []}, run_dir="r", base_epochs=3, base_seconds=1.0,
                    device="cpu", torch_version="t", archsearch_version="v", date="2026-01-01")


def test_channel_pattern_stage_ratios():
    # vgg11 at width 0.25: stages [16], [32], [64, 64], [128, 128], [128, 128]
    a = _proposal(0, widths=[16, 32, 32, 32, 64, 32, 64, 32], base_acc=0.8)
    b = _proposal(1, widths=[8, 16, 16, 48, 96, 32, 32, 32], base_acc=0.9)
    pat = P.extract([a, b], command="test")
    # stage 3 (index 2) of seed 0: mean(32, 32) / 64 = 0.5; seed 1: mean(16, 48) / 64 = 0.5
    assert pat["stage"]["ratio_mean"][2] == pytest.approx(0.5) and pat["stage"]["ratio_std"][2] == 0
    # stage 1: 16/16 and 8/16 -> mean 0.75; sample std (ddof=1): |1 - 0.5| / sqrt(2) = 0.353553 (the
    # population std would be 0.25)
    assert pat["stage"]["ratio_mean"][0] == pytest.approx(0.75)
    assert pat["stage"]["ratio_std"][0] == pytest.approx(0.353553, abs=1e-6)
    assert pat["layers"]["ratio_mean"][0] == pytest.approx(0.75)
    assert pat["accuracy"]["base"]["mean"] == pytest.approx(0.85)
    assert pat["accuracy"]["base"]["std"] == pytest.approx(0.070711, abs=1e-6)  # 0.1 / sqrt(2)
    assert pat["provenance"]["seeds"] == [0, 1] and pat["provenance"]["command"] == "test"
    assert "reduced scale" in pat["provenance"]["scale"]
    P.validate(pat)


def test_sparsity_pattern_density_and_kernel_maps():
    base = base_spec("vgg11", 10, width=0.25)
    from archsearch.archs import get_family

    convs = get_family("vgg").convs(base)
    masks = {c.name: np.zeros(c.shape, dtype=bool) for c in convs}
    for m in masks.values():
        m[..., 1, 1] = True  # only the centre
    masks[convs[0].name][..., 0, 0] = True  # layer 0 (stage 0) also keeps a corner
    pat = P.extract([_proposal(0, masks=masks, kind="sparsity")])
    assert pat["stage"]["density_mean"][0] == pytest.approx(2 / 9)
    assert pat["stage"]["density_mean"][1] == pytest.approx(1 / 9)
    km = np.array(pat["stage"]["kernel_keep_mean"])
    assert km.shape == (5, 3, 3)
    assert km[0, 1, 1] == 1 and km[0, 0, 0] == 1 and km[0, 2, 2] == 0
    assert km[3].sum() == 1 and km[3, 1, 1] == 1
    # one seed has no spread to measure: the file stores 0 (its schema holds numbers), never NaN
    assert pat["layers"]["density_std"] == [0.0] * len(convs) and pat["accuracy"]["base"]["std"] == 0.0
    assert np.array(pat["stage"]["kernel_keep_std"]).shape == (5, 3, 3) and not np.array(pat["stage"]["kernel_keep_std"]).any()


def _valid():
    return P.extract([_proposal(0), _proposal(1, widths=[8] * 8)])


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.update(schema=3), "schema"),
    (lambda d: d.pop("kind"), "kind is missing"),
    (lambda d: d.update(kind="weights"), "kind must be 'channels', 'sparsity' or 'depth'"),
    (lambda d: d.update(depth="11"), "depth needs a whole number, got '11'"),
    (lambda d: d["stage"].update(ratio_mean=[0.5]), "stage.ratio_mean"),
    (lambda d: d["layers"].update(ratio_mean=[2.0] * 8), "layers.ratio_mean.0 must be less than or equal to 1"),
    (lambda d: d["layers"].update(ratio_std=["x"] * 8), "layers.ratio_std.0 must be a number"),
    (lambda d: d.update(base_widths=[1]), "base widths"),
    (lambda d: d["provenance"].pop("command"), "provenance.command is missing"),
])
def test_schema_rejects_bad_patterns(mutate, msg, tmp_path):
    d = _valid()
    mutate(d)
    with pytest.raises(ArchsearchError, match=msg):
        P.validate(d)
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(d))
    with pytest.raises(ArchsearchError, match="bad.json"):
        P.load_pattern(f)


def test_not_json_and_sparsity_maps_checked(tmp_path):
    f = tmp_path / "p.json"
    f.write_text("{nope")
    with pytest.raises(ArchsearchError, match="not valid JSON"):
        P.load_pattern(f)
    base = base_spec("vgg11", 10, width=0.25)
    from archsearch.archs import get_family

    masks = {c.name: np.ones(c.shape, dtype=bool) for c in get_family("vgg").convs(base)}
    d = P.extract([_proposal(0, masks=masks, kind="sparsity")])
    d["stage"]["kernel_keep_mean"] = [[[1.0] * 3] * 2] * 5
    with pytest.raises(ArchsearchError, match="kernel_keep_mean.0 must have at least 3 items"):
        P.validate(d)


def test_save_is_atomic_and_validated(tmp_path):
    d = _valid()
    f = P.save_pattern(d, tmp_path / "a.json")
    before = f.read_text()
    bad = dict(d, kind="nope")
    with pytest.raises(ArchsearchError):
        P.save_pattern(bad, f)
    assert f.read_text() == before  # the old file survives a rejected write
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp files left


def test_search_path_order_and_lookup(tmp_path, monkeypatch):
    env1, env2, home = tmp_path / "e1", tmp_path / "e2", tmp_path / "xdg"
    for d in (env1, env2):
        d.mkdir()
    monkeypatch.setenv("ARCHSEARCH_PATTERNS", f"{env1}:{env2}")
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    path = P.search_path()
    assert [d.path for d in path[:3]] == [env1, env2, home / "archsearch" / "patterns"]
    assert any(d.origin == "repo" and d.path == REPO / "patterns" for d in path)  # a source checkout
    d = _valid()
    P.save_pattern(dict(d, name="p"), env2 / "p.json")
    P.save_pattern(dict(d, name="p", ratio=0.9), env1 / "p.json")
    e = P.find("p")
    assert e.path == env1 / "p.json" and e.origin == "$ARCHSEARCH_PATTERNS"  # first dir wins
    assert P.default_write_dir() == env1
    with pytest.raises(ArchsearchError, match="proposer spec, not a library entry"):
        P.find("magnitude-vgg13-c100")
    with pytest.raises(ArchsearchError, match="unknown pattern 'zzz'"):
        P.find("zzz")
    assert P.find(str(env2 / "p.json")).path == env2 / "p.json"


def test_wheel_ships_the_pattern_library(tmp_path):
    """A non-editable install finds the shipped patterns and sweep specs: they travel as data files."""
    shipped = sorted(p.name for p in (REPO / "patterns").glob("*.json"))
    if not shipped:
        pytest.skip("no shipped patterns yet")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    whl = next(tmp_path.glob("archsearch-*.whl"))
    names = zipfile.ZipFile(whl).namelist()
    for f in shipped:
        assert any(n.endswith(f"data/share/archsearch/patterns/{f}") for n in names), f
    for f in sorted(p.name for p in (REPO / "sweeps").glob("*.toml")):  # the sweep specs travel the same way
        assert any(n.endswith(f"data/share/archsearch/sweeps/{f}") for n in names), f


def test_written_files_get_the_usual_mode(tmp_path):
    import os
    import stat

    f = P.save_pattern(_valid(), tmp_path / "m.json")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask
