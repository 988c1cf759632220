"""The statistics of randomized smoothing (Cohen, Rosenfeld and Kolter, 2019).

Pure functions of class counts; no sampling happens here, so every rule of
the procedure can be tested on its own.

CERTIFY: n0 selection samples pick the top class c; n *fresh* estimation
samples count nA = #{f(x + eps) = c}. The one-sided (1 - alpha) Clopper-Pearson
lower bound on P(f(x + eps) = c) is the alpha-quantile of Beta(nA, n - nA + 1)
(0 when nA = 0). Below 1/2 the smoothed classifier abstains; otherwise it
returns c with the L2 radius sigma * Phi^-1(pA_lower).

PREDICT: the top two counts nA >= nB of n samples are compared by a two-sided
binomial test at p = 1/2; the top class is returned when the p-value is at most
alpha, else the smoothed classifier abstains. The probability of returning a
class other than the smoothed classifier's is then at most alpha.

Abstaining votes: a noise sample whose logits are NaN or infinite votes for no
class. It is treated as one more outcome, "abstain", of the base classifier:
it counts in n but never in nA, so pA_lower (and the radius) can only shrink,
and when "abstain" is the most frequent outcome the smoothed classifier
abstains. Both procedures stay valid for this extended base classifier.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta, binomtest, norm


def pa_lower_bound(n_a: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion.

    The alpha-quantile of Beta(n_a, n - n_a + 1); 0 when ``n_a`` is 0.
    """
    if not 0 <= n_a <= n or n < 1:
        raise ValueError(f"need 0 <= n_a <= n and n >= 1, got n_a={n_a}, n={n}")
    if n_a == 0:
        return 0.0
    return float(beta.ppf(alpha, n_a, n - n_a + 1))


def certified_radius(pa_lower: float, sigma: float) -> float | None:
    """The L2 radius sigma * Phi^-1(pA_lower), or None (abstain) below 1/2."""
    if pa_lower < 0.5:
        return None
    return float(sigma * norm.ppf(pa_lower))


def best_pa_lower(n: int, alpha: float) -> float:
    """The largest pA_lower n samples can give: alpha ** (1 / n) (nA = n)."""
    return float(alpha ** (1.0 / n))


def radius_ceiling(sigma: float, n: int, alpha: float) -> float | None:
    """The largest radius CERTIFY can return with n samples: sigma * Phi^-1(alpha^(1/n)).

    None when even nA = n gives pA_lower < 1/2 (n too small to certify).
    """
    return certified_radius(best_pa_lower(n, alpha), sigma)


def min_samples_to_certify(alpha: float) -> int:
    """The smallest n with alpha ** (1/n) >= 1/2, i.e. ceil(log2(1/alpha))."""
    n = max(1, math.ceil(math.log2(1.0 / alpha)))
    while best_pa_lower(n, alpha) < 0.5:  # guard against rounding in log2
        n += 1
    return n


def certify_from_counts(selection: np.ndarray, estimation: np.ndarray, sigma: float,
                        alpha: float, abstain: tuple[int, int] = (0, 0)
                        ) -> tuple[int | None, int, float, float]:
    """CERTIFY's decision from the two independent count vectors.

    ``abstain`` holds the abstaining votes (non-finite logits) among the
    selection and the estimation samples; they count in n, never in nA.
    Returns (class or None for abstain, nA, pA_lower, radius); the radius is 0
    when the smoothed classifier abstains.
    """
    top = int(np.argmax(selection))
    if int(abstain[0]) >= int(selection[top]):  # "abstain" wins the selection (or no vote)
        return None, 0, 0.0, 0.0
    n = int(np.sum(estimation)) + int(abstain[1])
    n_a = int(estimation[top])
    lower = pa_lower_bound(n_a, n, alpha)
    radius = certified_radius(lower, sigma)
    if radius is None:
        return None, n_a, lower, 0.0
    return top, n_a, lower, radius


def predict_from_counts(counts: np.ndarray, alpha: float,
                        abstain: int = 0) -> tuple[int | None, int, int, float]:
    """PREDICT's decision: (class or None for abstain, nA, nB, p-value).

    ``abstain`` abstaining votes (non-finite logits) compete as one more
    outcome; when they are the top outcome the smoothed classifier abstains.
    """
    classes = len(counts)
    counts = np.append(np.asarray(counts, np.int64), int(abstain))
    order = np.argsort(counts, kind="stable")[::-1]
    top = int(order[0])
    n_a = int(counts[top])
    n_b = int(counts[order[1]]) if len(counts) > 1 else 0
    p_value = float(binomtest(n_a, n_a + n_b, 0.5).pvalue) if n_a + n_b else 1.0
    if p_value > alpha or top == classes:
        return None, n_a, n_b, p_value
    return top, n_a, n_b, p_value


def sample_size_warnings(sigma: float, n: int, alpha: float,
                         radii: tuple[float, ...] = ()) -> list[str]:
    """Plain-language warnings about an (n, alpha) that cannot give what is asked."""
    ceiling = radius_ceiling(sigma, n, alpha)
    if ceiling is None:
        return [f"n = {n} is too small to ever certify at alpha = {alpha:g}: even when every "
                f"sample agrees, pA_lower = alpha^(1/n) = {best_pa_lower(n, alpha):.4f} < 0.5; "
                f"use n >= {min_samples_to_certify(alpha)}"]
    too_large = [r for r in radii if r > ceiling]
    if not too_large:
        return []
    listed = ", ".join(f"{r:g}" for r in too_large)
    return [f"no certificate can reach radius {listed}: with n = {n} and alpha = {alpha:g} the "
            f"largest certifiable radius is sigma * Phi^-1(alpha^(1/n)) = {ceiling:.4f}"]
