"""`archsearch.stats`, checked on numbers worked out by hand (issue 29): the sample std, the
paired difference over seeds and its 95% Student-t interval, the verdict words, and the
reports' headline (the final epoch)."""

import math

import pytest

from archsearch.errors import ArchsearchError
from archsearch.stats import Spread, accuracy_cells, final_acc, over_seeds, paired

# two-sided 95% Student-t quantiles t(0.975, df), from a printed table (not from scipy)
T975 = {1: 12.706205, 2: 4.302653, 4: 2.776445}


def test_spread_is_the_sample_std():
    s = Spread.of([1.0, 2.0, 3.0])
    # deviations -1, 0, 1: squares sum to 2, over n - 1 = 2: variance 1 (population: 2/3, std 0.816)
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    two = Spread.of([90.0, 92.0])  # squares 1 + 1 over 1: std sqrt(2) (population std: 1.0)
    assert two.std == pytest.approx(math.sqrt(2)) and two.text() == "91.00 ± 1.41"
    assert two.cells("acc") == {"acc_mean": 91.0, "acc_std": 1.41}


def test_one_seed_has_no_spread_and_none_is_nothing():
    one = Spread.of([80.125])
    assert one.std is None and one.n == 1
    assert one.cells("acc") == {"acc_mean": 80.12, "acc_std": None} and one.text() == "80.12 (1 seed)"
    assert Spread.of([]) is None


def test_paired_interval_on_known_differences():
    # differences a - b = 1, 2, 3: mean 2, sample std 1, CI 2 ± 4.302653 / sqrt(3) = [-0.484138, 4.484138]
    a, b = {0: 11.0, 1: 12.0, 2: 13.0}, {0: 10.0, 1: 10.0, 2: 10.0}
    p = paired(a, b)
    half = T975[2] * 1.0 / math.sqrt(3)
    assert (p.seeds, p.n, p.mean, p.std) == ((0, 1, 2), 3, 2.0, 1.0)
    assert p.low == pytest.approx(2 - half, abs=1e-5) and p.high == pytest.approx(2 + half, abs=1e-5)
    assert p.low == pytest.approx(-0.484138, abs=1e-5) and p.high == pytest.approx(4.484138, abs=1e-5)
    assert p.verdict == "matches"
    assert p.numbers("x") == {"x_diff": 2.0, "x_diff_std": 1.0, "x_ci_low": -0.48, "x_ci_high": 4.48, "x_n": 3,
                              "x_verdict": "matches"}
    assert p.sentence("guided", "uniform") == ("guided matches uniform: +2.00 points, 95% CI [-0.48, 4.48], n = 3 "
                                               "seeds (no clear difference: the 95% CI spans 0)")


@pytest.mark.parametrize("diffs, df, verdict", [
    ([2.0, 3.0, 4.0], 2, "beats"),            # mean 3, sd 1: [0.516, 5.484] lies above 0
    ([-2.0, -3.0, -4.0], 2, "falls short of"),  # its mirror lies below 0
    ([1.0, 3.0], 1, "matches"),               # mean 2, sd sqrt(2): 2 ± 12.706 spans 0
    ([0.5, 1.0, 1.5, 1.0, 1.0], 4, "beats"),  # mean 1, sd sqrt(0.125): 1 ± 2.776445 * 0.158114 = [0.561, 1.439]
])
def test_verdict_follows_the_interval(diffs, df, verdict):
    a = {s: 50.0 + d for s, d in enumerate(diffs)}
    b = {s: 50.0 for s in range(len(diffs))}
    p = paired(a, b)
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    assert p.mean == pytest.approx(mean) and p.std == pytest.approx(sd)
    assert (p.low, p.high) == pytest.approx((mean - T975[df] * sd / math.sqrt(n), mean + T975[df] * sd / math.sqrt(n)),
                                            abs=1e-5)
    assert p.verdict == verdict and p.sentence("a", "b").startswith(f"a {verdict} b: ")


def test_pairs_are_the_seeds_both_have():
    """Seed 3 ran only on one side, seed 0 only on the other: they pair with nothing."""
    p = paired({1: 5.0, 2: 7.0, 3: 100.0}, {0: -100.0, 1: 4.0, 2: 4.0})
    assert p.seeds == (1, 2) and p.n == 2 and p.mean == 2.0  # (5 - 4 + 7 - 4) / 2
    assert paired({0: 1.0}, {1: 1.0}) is None


def test_one_pair_has_no_interval_and_no_verdict():
    p = paired({0: 61.0}, {0: 60.0})
    assert (p.n, p.mean, p.std, p.low, p.high, p.verdict) == (1, 1.0, None, None, None, None)
    assert p.numbers("x")["x_verdict"] == "" and p.numbers("x")["x_ci_low"] is None
    assert p.sentence("scratch-e", "fine-tuning") == ("scratch-e against fine-tuning: +1.00 points on one seed "
                                                      "(no interval, no verdict)")


def test_equal_sides_match():
    p = paired({0: 70.0, 1: 71.0}, {0: 70.0, 1: 71.0})  # no difference, no spread: the interval is [0, 0]
    assert (p.low, p.high, p.verdict) == (0.0, 0.0, "matches")


def test_the_final_epoch_is_the_headline():
    cells = accuracy_cells(final=[90.0, 91.0, 89.5], best=[91.25, 92.5, 90.0])
    assert list(cells) == ["seeds", "final_acc_mean", "final_acc_std", "best_acc_mean", "best_acc_std", "final_acc",
                           "best_acc"]
    # final: mean 90.1667, deviations -0.1667, 0.8333, -0.6667: squares 0.02778 + 0.69444 + 0.44444 = 1.16667,
    # over 2: 0.58333, std 0.76376
    assert cells["seeds"] == 3 and cells["final_acc_mean"] == 90.17 and cells["final_acc_std"] == 0.76
    assert cells["final_acc"] == "90.17 ± 0.76"
    # best: mean 91.25, deviations 0, 1.25, -1.25: squares 3.125 over 2: std 1.25
    assert cells["best_acc_std"] == 1.25 and cells["best_acc"] == "91.25 ± 1.25"
    with pytest.raises(TypeError):  # the two lists are named: they cannot be swapped unseen
        accuracy_cells([1.0], [2.0])


def test_a_record_without_a_final_accuracy_is_refused():
    assert final_acc({"final_acc": 88.5, "best_acc": 90.0}, "trial #1") == 88.5
    for rec in ({"best_acc": 90.0}, {"best_acc": 90.0, "final_acc": None}):
        with pytest.raises(ArchsearchError, match=r"^trial #7 \(r0/finetune/s1\) records no final-epoch accuracy"):
            final_acc(rec, "trial #7 (r0/finetune/s1)")


def test_seed_counts_in_words():
    assert over_seeds([3, 3, 3]) == "over 3 seeds" and over_seeds([1]) == "over 1 seed"
    assert over_seeds([2, 3, 3]) == "over 2-3 seeds (each row's: the seeds column)"
    assert over_seeds([]) == "over seeds (their count not recorded)"
