"""benchmarks/restat_patterns.py: the committed patterns' stds are the extractor's, from their per-seed proposals."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from archsearch.errors import ArchsearchError
from helpers import load_script

REPO = Path(__file__).resolve().parents[1]


RESTAT = load_script("restat_patterns")


def test_committed_patterns_hold_the_current_stds(capsys):
    """--check writes nothing and passes only if every restated file is current."""
    assert RESTAT.main(["--check"]) == 0, capsys.readouterr().out


def test_a_stale_std_is_recomputed_as_the_sample_std():
    pat = json.loads((REPO / "patterns" / "l1norm-vgg16-c10.A.json").read_text())
    base = [p["base_acc"] for p in pat["proposals"]]
    assert len(base) == 2
    stale = copy.deepcopy(pat)
    stale["accuracy"]["base"]["std"] = round(abs(base[0] - base[1]) / 2, 6)  # the population std of 2 seeds
    fixed = RESTAT.restated(stale)
    assert fixed["accuracy"]["base"]["std"] == pytest.approx(abs(base[0] - base[1]) / 2 ** 0.5, abs=1e-6)
    assert fixed == pat


def test_a_mean_that_does_not_recompute_is_refused():
    """The per-seed records must be the ones the pattern was made from: a stored mean that they
    do not give is an error, not something to overwrite."""
    pat = json.loads((REPO / "patterns" / "lottery-vgg16-c10.json").read_text())
    pat["stage"]["density_mean"][0] += 0.01
    with pytest.raises(ArchsearchError, match=r"stage\.density_mean\[0\]"):
        RESTAT.restated(pat)


def test_unknown_name_is_one_line_exit_2(capsys):
    assert RESTAT.main(["no-such-pattern"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
