"""Intervals and paired tests: known values, determinism, and behaviour on real and null effects."""
import math

import numpy as np
import pytest

from analysis import intervals as iv
from analysis.intervals import ItemScores


def binary(correct, prefix="q"):
    return ItemScores(tuple(f"{prefix}{i}" for i in range(len(correct))),
                      np.array(correct, dtype=float), binary=True)


def graded(values, groups=None):
    return ItemScores(tuple(f"q{i}" for i in range(len(values))), np.array(values, dtype=float),
                      groups=None if groups is None else tuple(groups))


def wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize("k, n, expected", [(8, 10, (0.4902, 0.9433)), (0, 10, (0.0, 0.2775)),
                                            (10, 10, (0.7225, 1.0)), (81, 263, (0.2553, 0.3662))])
def test_wilson_known_values(k, n, expected):
    low, high = iv.wilson_interval(k, n)
    assert low == pytest.approx(expected[0], abs=1e-4) and high == pytest.approx(expected[1], abs=1e-4)
    assert (low, high) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)


def test_one_run_of_plain_accuracy_gets_wilson():
    assert iv.interval([binary([1] * 8 + [0] * 2)]) == pytest.approx((0.4902, 0.9433, "wilson"), abs=1e-4)


def test_mcnemar_exact_known_value():
    # 10 items only the first gets right, 2 only the second: 2 * P(X <= 2 | n=12, 1/2)
    a = np.array([1] * 10 + [0] * 2 + [1] * 5 + [0] * 5)
    b = np.array([0] * 10 + [1] * 2 + [1] * 5 + [0] * 5)
    assert iv.mcnemar_exact(a, b) == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert iv.mcnemar_exact(a, a) == 1.0


def test_scores_mean_ratio_and_macro_average():
    assert graded([0.5, 1.0, 0.0, 0.5]).score() == pytest.approx(0.5)
    ratio = ItemScores(("a", "b"), np.array([3.0, 1.0]), denominators=np.array([1.0, 3.0]))
    assert ratio.score() == pytest.approx(4 / 4)  # sum / sum, not the mean of 3 and 1/3
    macro = graded([1, 1, 1, 0], groups=["x", "y", "y", "y"])
    assert macro.score() == pytest.approx((1 + 2 / 3) / 2)


def test_bootstrap_is_seeded_deterministic_and_about_the_normal_width():
    rng = np.random.default_rng(1)
    run = graded(rng.uniform(size=400))
    first, again = iv.interval([run], seed=3), iv.interval([run], seed=3)
    assert first == again and first[2] == "bootstrap"
    assert iv.interval([run], seed=4) != first
    low, high, _ = first
    assert low < run.score() < high
    normal = 2 * 1.96 * np.std(run.values, ddof=1) / math.sqrt(400)
    assert (high - low) == pytest.approx(normal, rel=0.15)


def test_ratio_bootstrap_brackets_sum_over_sum():
    rng = np.random.default_rng(2)
    tokens = rng.integers(5, 50, size=200).astype(float)
    nll = tokens * rng.uniform(1.5, 3.0, size=200)
    run = ItemScores(tuple(map(str, range(200))), nll, denominators=tokens)
    low, high, _ = iv.interval([run])
    assert low < nll.sum() / tokens.sum() < high and high - low < 0.3


def test_identical_seeds_give_the_one_seed_interval():
    """Seeds share one item draw, so two copies of a run are no more certain than one."""
    run = graded(np.linspace(0, 1, 50))
    assert iv.interval([run, run])[:2] == pytest.approx(iv.interval([run])[:2])


def test_paired_identical_runs_show_nothing():
    a = binary([1, 0, 1, 1, 0] * 20)
    d = iv.paired_difference([a], [a])
    assert (d.value, d.low, d.high, d.p_value, d.test) == (0.0, 0.0, 0.0, 1.0, "McNemar exact")
    g = graded(np.linspace(0, 1, 60))
    d = iv.paired_difference([g, g], [g])
    assert (d.value, d.low, d.high, d.p_value, d.test) == (0.0, 0.0, 0.0, 1.0, "paired bootstrap")


def test_paired_detects_a_real_difference():
    rng = np.random.default_rng(5)
    ref = rng.uniform(size=300) < 0.5
    better = ref | (rng.uniform(size=300) < 0.4)  # right wherever the reference is, and more
    d = iv.paired_difference([binary(better)], [binary(ref)])
    assert d.test == "McNemar exact" and d.p_value < 1e-6 and d.low > 0
    assert d.value == pytest.approx(better.mean() - ref.mean()) and d.n_items == 300
    f1_ref = rng.uniform(size=300)
    d = iv.paired_difference([graded(f1_ref + 0.05)], [graded(f1_ref)])
    assert d.test == "paired bootstrap" and d.p_value < 0.01
    assert d.low == pytest.approx(0.05) and d.high == pytest.approx(0.05)  # every item +0.05


def test_paired_noise_is_not_called_a_difference():
    rng = np.random.default_rng(6)
    a, b = rng.uniform(size=200) < 0.5, rng.uniform(size=200) < 0.5  # same rate, independent
    d = iv.paired_difference([binary(a)], [binary(b)])
    assert d.low < 0 < d.high and d.p_value > 0.05  # seeded draws, so this holds every run


def test_items_are_matched_by_id_not_position():
    a = binary([1, 1, 0, 0])
    shuffled = ItemScores(tuple(reversed(a.ids)), a.values[::-1].copy(), binary=True)
    d = iv.paired_difference([shuffled], [a])
    assert d.value == 0.0 and d.p_value == 1.0


def test_different_items_refuse():
    with pytest.raises(iv.ItemMismatch, match="1 missing, 1 extra"):
        iv.paired_difference([binary([1, 0, 1])],
                             [ItemScores(("q0", "q1", "z9"), np.ones(3), binary=True)])
    with pytest.raises(ValueError, match="ids repeat"):
        ItemScores(("a", "a"), np.ones(2))


def test_macro_average_resamples_within_groups():
    """A group of one item keeps its item in every resample: its group mean never moves."""
    run = graded([0.0] + [1.0] * 30 + [0.0] * 30, groups=["solo"] + ["big"] * 60)
    low, high, _ = iv.interval([run], n_resamples=500)
    assert run.score() == pytest.approx(0.25)
    assert 0 < low <= 0.25 <= high <= 0.5


def test_a_macro_average_of_one_item_per_group_is_not_a_zero_width_interval():
    """BBH at one item per subtask: 1 of 7 right is a plain accuracy with Wilson's interval, not
    the point [1/7, 1/7] a within-subtask bootstrap would give."""
    run = ItemScores(ids=tuple("abcdefg"), values=np.array([1.0, 0, 0, 0, 0, 0, 0]),
                     groups=tuple("abcdefg"), binary=True)
    low, high, method = iv.interval([run])
    assert method == "wilson" and (low, high) == iv.wilson_interval(1, 7)
    assert high - low > 0.3
    graded = ItemScores(ids=tuple("abcd"), values=np.array([0.2, 0.9, 0.4, 0.7]), groups=tuple("abcd"))
    low, high, method = iv.interval([graded])
    assert method == "bootstrap" and low < graded.score() < high


def test_every_problem_failed_is_a_binomial_interval_not_a_point():
    """HumanEval pass@1 of 0 on 4 problems: Wilson's [0, 49%], not the bootstrap's [0, 0]."""
    run = ItemScores(ids=tuple("abcd"), values=np.zeros(4))
    low, high, method = iv.interval([run])
    assert method == "wilson" and (low, high) == iv.wilson_interval(0, 4) and high > 0.4
    halves = ItemScores(ids=tuple("abcd"), values=np.array([0.0, 0.5, 0.0, 1.0]))
    assert iv.interval([halves])[2] == "bootstrap"
