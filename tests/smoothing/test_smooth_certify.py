"""CERTIFY and PREDICT through onnxruntime on models with known behaviour (fixed seeds)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from verifier.errors import MismatchError, ModelError
from verifier.smoothing import SmoothedClassifier, certify_property, pa_lower_bound

SIGMA = 0.5


def test_constant_classifier_certifies_the_radius_ceiling(build):
    n, alpha = 2000, 0.001
    classifier = SmoothedClassifier(build.constant(label=3), SIGMA, batch=256)
    cert = classifier.certify(np.zeros(build.SHAPE), n0=50, n=n, alpha=alpha, label=3)
    assert cert.prediction == 3 and cert.n_a == n and cert.correct
    assert cert.pa_lower == pytest.approx(alpha ** (1 / n), rel=1e-12)
    assert cert.radius == pytest.approx(SIGMA * norm.ppf(alpha ** (1 / n)), rel=1e-10)


@pytest.mark.parametrize("reduce", [True, False])
def test_coin_flip_classifier_abstains(build, reduce):
    # logits [x0, -x0] at x0 = 0: each class has probability exactly 1/2
    w = np.zeros(16)
    w[0] = 1.0
    classifier = SmoothedClassifier(build.linear_pair(w), SIGMA, seed=0, reduce=reduce)
    cert = classifier.certify(np.zeros(build.SHAPE), n0=100, n=4000, alpha=0.001)
    assert cert.abstained and cert.radius == 0.0 and cert.pa_lower < 0.5
    assert classifier.predict(np.zeros(build.SHAPE), n=4000, alpha=0.001).abstained


@pytest.mark.parametrize("reduce", [True, False])
def test_counts_follow_the_known_probability(build, reduce):
    """For logits [w.x, -w.x], P(class 0) = Phi(w.x / (sigma |w|)), in both sampling paths."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=16)
    x = rng.normal(size=16) * 0.1
    p = norm.cdf(w @ x / (SIGMA * np.linalg.norm(w)))
    classifier = SmoothedClassifier(build.linear_pair(w), SIGMA, seed=1, reduce=reduce)
    assert (classifier.reduction is not None) == reduce
    n = 40_000
    counts = classifier.counts(x.reshape(build.SHAPE), 0, n)
    assert counts.sum() == n
    assert abs(counts[0] / n - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_certificate_matches_the_counts(build):
    w = np.ones(16)
    x = np.full(build.SHAPE, 0.05)
    classifier = SmoothedClassifier(build.linear_pair(w), SIGMA, seed=2)
    cert = classifier.certify(x, n0=100, n=5000, alpha=0.01, label=0)
    estimation = classifier.counts(x, 100, 5000)  # the same positions: the same draws
    assert cert.n_a == estimation[0]
    assert cert.pa_lower == pa_lower_bound(int(estimation[0]), 5000, 0.01)
    assert cert.radius == pytest.approx(SIGMA * norm.ppf(cert.pa_lower))
    # the true radius of this linear smoothed classifier is |w.x| / |w| (exact, Cohen Thm 1)
    assert cert.radius <= abs(w @ x.reshape(-1)) / np.linalg.norm(w) + 1e-9


def test_seed_reproducibility_across_batch_sizes_and_banks(build):
    model, x = build.mlp(seed=3), np.full(build.SHAPE, 0.3)
    first = SmoothedClassifier(model, SIGMA, seed=11, batch=100).certify(x, 50, 3000, idx=4)
    again = SmoothedClassifier(model, SIGMA, seed=11, batch=777).certify(x, 50, 3000, idx=4)
    other = SmoothedClassifier(model, SIGMA, seed=12, batch=100).certify(x, 50, 3000, idx=4)
    assert (first.n_a, first.pa_lower) == (again.n_a, again.pa_lower)
    assert first.n_a != other.n_a or first.pa_lower == other.pa_lower
    fresh = SmoothedClassifier(model, SIGMA, seed=11, bank_bytes=0)
    assert fresh.noise.capacity == 0
    assert fresh.certify(x, 50, 3000, idx=4).n_a == fresh.certify(x, 50, 3000, idx=4).n_a


def test_fixed_batch_and_looped_models_sample_correctly(build):
    w = np.zeros(16)
    w[3] = 1.0
    x = np.zeros(16)
    x[3] = 0.25  # P(class 0) = Phi(0.5)
    looped = build.linear_pair(w, shape=(16,), fixed_batch=True, reshape=[1, 16])
    for reduce in (True, False):
        classifier = SmoothedClassifier(looped, SIGMA, seed=5, batch=64, reduce=reduce)
        assert classifier.model_batch_mode == "loop"
        counts = classifier.counts(x, 0, 1000 if not reduce else 20_000)
        n = counts.sum()
        assert abs(counts[0] / n - norm.cdf(0.5)) < 4 * np.sqrt(0.25 / n)


def test_predict_wrong_class_rate_through_the_model(build):
    """Independent trials (no shared bank): a wrong answer at most alpha of the time."""
    w = np.zeros(16)
    w[0] = 1.0
    x = np.zeros(16)
    x[0] = SIGMA * norm.ppf(0.55)  # P(class 0) = 0.55: class 0 is the smoothed class
    classifier = SmoothedClassifier(build.linear_pair(w), SIGMA, seed=6, bank_bytes=0, batch=200)
    alpha, trials = 0.1, 300
    answers = [classifier.predict(x, n=200, alpha=alpha, idx=i).prediction for i in range(trials)]
    wrong = np.mean([a == 1 for a in answers])
    assert wrong <= alpha + 3 * np.sqrt(alpha / trials)


def test_conv_model_and_centre_in_graph(build):
    classifier = SmoothedClassifier(build.conv(), SIGMA)
    assert classifier.reduction is None and classifier.center_in_graph
    assert "input space" in classifier.describe()
    cert = classifier.certify(np.zeros(build.SHAPE), n0=20, n=500)
    assert cert.n == 500 and 0 <= cert.n_a <= 500


def test_bad_inputs(build):
    classifier = SmoothedClassifier(build.mlp(), SIGMA)
    with pytest.raises(MismatchError, match="16 values"):
        classifier.certify(np.zeros(15), n0=10, n=100)
    with pytest.raises(ValueError):
        classifier.certify(np.zeros(16), n0=0, n=100)
    with pytest.raises(ValueError):
        SmoothedClassifier(build.mlp(), 0.0)
    with pytest.raises(ModelError, match="at least two"):
        SmoothedClassifier(build.linear_pair(np.ones(16), columns=1), SIGMA)


def test_certify_property_reads_centre_label_and_box(build, tmp_path):
    w = np.ones(16)
    lines = [f"(declare-const X_{i} Real)" for i in range(16)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(2)]
    lines += [f"(assert (>= X_{i} 0.1))\n(assert (<= X_{i} 0.3))" for i in range(16)]
    lines += ["(assert (>= Y_1 Y_0))"]  # unsafe: class 1 wins; the protected label is 0
    path = tmp_path / "robust.vnnlib"
    path.write_text("\n".join(lines) + "\n")
    cert = certify_property(build.save(build.linear_pair(w), tmp_path / "m.onnx"), str(path),
                            SIGMA, n0=100, n=2000, alpha=0.001, seed=0)
    assert cert.label == 0 and cert.prediction == 0 and cert.correct
    assert cert.region_radius == pytest.approx(0.1 * 4)  # half-width 0.1, 16 inputs
    # centre 0.2 everywhere: true radius w.x/|w| = 0.8 > ceiling, so it certifies the box
    assert cert.covers_region is True
    data = cert.to_dict()
    assert data["confidence"] == pytest.approx(0.999) and data["label"] == 0
