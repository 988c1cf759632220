"""The statistics of CERTIFY and PREDICT, against independent computations."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import beta, binom, norm

from verifier.smoothing.stats import (best_pa_lower, certified_radius, certify_from_counts,
                                      min_samples_to_certify, pa_lower_bound,
                                      predict_from_counts, radius_ceiling,
                                      sample_size_warnings)


@pytest.mark.parametrize("n_a,n,alpha", [(1, 10, 0.05), (57, 100, 0.001), (990, 1000, 0.01),
                                         (99_950, 100_000, 0.001), (3, 3, 0.2)])
def test_pa_lower_is_the_beta_quantile(n_a, n, alpha):
    assert pa_lower_bound(n_a, n, alpha) == pytest.approx(beta.ppf(alpha, n_a, n - n_a + 1),
                                                          rel=1e-12)


@pytest.mark.parametrize("n_a,n,alpha", [(57, 100, 0.001), (990, 1000, 0.01), (5, 40, 0.1)])
def test_pa_lower_is_the_one_sided_clopper_pearson_bound(n_a, n, alpha):
    # the p at which seeing n_a or more successes has probability exactly alpha
    p = brentq(lambda q: binom.sf(n_a - 1, n, q) - alpha, 1e-12, 1 - 1e-12, xtol=1e-14)
    assert pa_lower_bound(n_a, n, alpha) == pytest.approx(p, rel=1e-8)


def test_pa_lower_is_zero_without_successes():
    assert pa_lower_bound(0, 1000, 0.001) == 0.0


def test_pa_lower_covers_the_true_probability_at_level_alpha():
    rng = np.random.default_rng(0)
    p, n, alpha, trials = 0.7, 200, 0.05, 4000
    hits = rng.binomial(n, p, size=trials)
    misses = np.mean([pa_lower_bound(int(k), n, alpha) > p for k in hits])
    assert misses <= alpha + 3 * np.sqrt(alpha / trials)


def test_radius_and_abstain_threshold():
    assert certified_radius(0.49999, 0.5) is None
    assert certified_radius(0.5, 0.5) == 0.0
    assert certified_radius(norm.cdf(2.0), 0.25) == pytest.approx(0.5)


def test_ceiling_is_3_81_sigma_at_n_1e5():
    assert radius_ceiling(1.0, 100_000, 0.001) == pytest.approx(3.81, abs=5e-3)  # GUIDE §4
    assert radius_ceiling(0.25, 10_000, 0.001) == pytest.approx(0.25 * norm.ppf(0.001 ** 1e-4))


def test_constant_counts_certify_the_ceiling():
    sigma, n, alpha = 0.5, 1000, 0.001
    selection = np.array([0, 100, 0])
    estimation = np.array([0, n, 0])
    label, n_a, lower, radius = certify_from_counts(selection, estimation, sigma, alpha)
    assert (label, n_a) == (1, n)
    assert lower == pytest.approx(alpha ** (1 / n), rel=1e-12)
    assert radius == pytest.approx(sigma * norm.ppf(alpha ** (1 / n)), rel=1e-10)


def test_certify_abstains_on_a_coin_flip():
    label, _, lower, radius = certify_from_counts(np.array([51, 49]), np.array([5010, 4990]),
                                                  0.25, 0.001)
    assert label is None and radius == 0.0 and lower < 0.5


def test_certify_counts_the_selected_class_in_the_estimation_draw():
    # selection picks class 2; the estimation counts of other classes do not matter
    label, n_a, _, _ = certify_from_counts(np.array([1, 0, 99]), np.array([900, 0, 100]),
                                           0.25, 0.001)
    assert (label, n_a) == (None, 100)


def test_smallest_n_that_can_certify():
    for alpha in (0.5, 0.1, 0.01, 0.001, 1e-6):
        n = min_samples_to_certify(alpha)
        assert best_pa_lower(n, alpha) >= 0.5
        assert n == 1 or best_pa_lower(n - 1, alpha) < 0.5
    assert min_samples_to_certify(0.001) == 10


def test_predict_abstains_on_a_tie_and_answers_a_clear_winner():
    assert predict_from_counts(np.array([50, 50, 0]), 0.001)[0] is None
    label, n_a, n_b, p_value = predict_from_counts(np.array([3, 90, 7]), 0.001)
    assert (label, n_a, n_b) == (1, 90, 7) and p_value < 1e-10


@pytest.mark.parametrize("p_top", [0.49, 0.52, 0.55])
def test_predict_returns_a_wrong_class_with_probability_at_most_alpha(p_top):
    """Simulated counts: returning any class but the true top one happens <= alpha."""
    rng = np.random.default_rng(1)
    n, alpha, trials = 200, 0.05, 20_000
    probs = [p_top, 1 - p_top - 0.02, 0.02]
    counts = rng.multinomial(n, probs, size=trials)
    unique, inverse = np.unique(counts, axis=0, return_inverse=True)  # one test per outcome
    decided = [predict_from_counts(c, alpha)[0] for c in unique]
    answers = [decided[i] for i in inverse.reshape(-1)]
    # p_top = 0.49 ties the top two classes: the smoothed class is undefined, any answer is wrong
    wrong = np.mean([a is not None and (a != 0 or probs[0] <= probs[1]) for a in answers])
    assert wrong <= alpha + 3 * np.sqrt(alpha / trials)


def test_warnings():
    assert "too small to ever certify" in sample_size_warnings(0.25, 9, 0.001)[0]
    assert sample_size_warnings(0.25, 10, 0.001) == []
    message = sample_size_warnings(0.25, 10_000, 0.001, (0.25, 0.5, 1.0))[0]
    assert "radius 1" in message and "0.7996" in message
    assert sample_size_warnings(0.25, 100_000, 0.001, (0.25, 0.5)) == []
