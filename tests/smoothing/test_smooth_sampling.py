"""Noise bank, seeding, and the exact graph rewrites used for sampling."""
from __future__ import annotations

import numpy as np
import pytest

from verifier import runtime
from verifier.smoothing.graphs import split_first_affine, with_center_input
from verifier.smoothing.noise import CHUNK, NoiseSource


def _collect(source, idx, start, stop, batch):
    return np.concatenate([b.copy() for b in source.batches(idx, start, stop, batch)])


def test_noise_is_gaussian_with_scale_sigma():
    source = NoiseSource(dim=8, sigma=0.5, seed=0, bank_bytes=0)
    draws = _collect(source, 0, 0, 20_000, 1000)
    assert draws.dtype == np.float32 and draws.shape == (20_000, 8)
    assert abs(draws.mean()) < 0.01
    assert draws.std() == pytest.approx(0.5, rel=0.01)


def test_same_seed_same_noise_whatever_the_batch_size():
    a = _collect(NoiseSource(4, 1.0, seed=7, bank_bytes=0), 3, 0, 5000, 64)
    b = _collect(NoiseSource(4, 1.0, seed=7, bank_bytes=0), 3, 0, 5000, 1000)
    c = _collect(NoiseSource(4, 1.0, seed=8, bank_bytes=0), 3, 0, 5000, 1000)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bank_is_shared_by_inputs_and_overflow_is_fresh():
    source = NoiseSource(dim=4, sigma=1.0, seed=1, bank_bytes=4 * 4 * (CHUNK + 100))
    source.reserve(10 * CHUNK)
    assert source.capacity == CHUNK + 100  # capped by the budget
    stop = CHUNK + 500
    first, second = _collect(source, 0, 0, stop, 512), _collect(source, 1, 0, stop, 512)
    np.testing.assert_array_equal(first[:CHUNK + 100], second[:CHUNK + 100])  # the bank
    assert not np.array_equal(first[CHUNK + 100:], second[CHUNK + 100:])  # fresh per input


def test_selection_and_estimation_draws_are_distinct():
    source = NoiseSource(dim=3, sigma=1.0, seed=2, bank_bytes=0)
    selection, estimation = _collect(source, 0, 0, 100, 64), _collect(source, 0, 100, 1100, 64)
    assert not np.isin(selection[:, 0], estimation[:, 0]).any()


def test_bank_growth_keeps_its_first_rows():
    source = NoiseSource(dim=2, sigma=1.0, seed=3)
    source.reserve(CHUNK + 10)
    before = source.bank.copy()
    source.reserve(3 * CHUNK)
    np.testing.assert_array_equal(source.bank[:len(before)], before)
    assert not source.bank.flags.writeable


def test_affine_split_is_exact(build):
    model = build.mlp(seed=5)  # Gemm with alpha 0.5, beta 2, transB
    prefix, why = split_first_affine(model)
    assert prefix is not None, why
    assert (prefix.in_dim, prefix.out_dim) == (16, 8)
    x = np.random.default_rng(0).random((4,) + build.SHAPE).astype(np.float32)
    full = runtime.open_session(model).run(x)
    centers = np.stack([prefix.center(row) for row in x]).astype(np.float32)
    np.testing.assert_allclose(runtime.open_session(prefix.rest).run(centers), full,
                               rtol=1e-5, atol=1e-5)


def test_affine_split_of_matmul_keeps_the_bias_in_the_rest(build):
    prefix, why = split_first_affine(build.mlp(seed=6, matmul=True))
    assert prefix is not None, why
    assert [n.op_type for n in prefix.rest.graph.node][0] == "Add"
    assert np.all(prefix.bias == 0)


def test_noise_factor_has_the_covariance_of_w_eps(build):
    prefix, _ = split_first_affine(build.mlp(seed=7))
    sigma = 0.3
    factor = prefix.noise_factor(sigma).astype(np.float64)
    np.testing.assert_allclose(factor.T @ factor, sigma ** 2 * prefix.weight.T @ prefix.weight,
                               rtol=1e-5, atol=1e-6)
    # and in simulation: u @ factor against eps @ W
    rng = np.random.default_rng(0)
    direct = rng.standard_normal((200_000, factor.shape[0])) @ factor
    cov = np.cov(direct, rowvar=False)
    expect = sigma ** 2 * prefix.weight.T @ prefix.weight
    assert np.abs(cov - expect).max() < 0.03 * np.abs(expect).max()


@pytest.mark.parametrize("maker,reason", [("conv", "not flattened"),
                                          ("constant_output", "is the model's output")])
def test_no_split_where_it_does_not_apply(build, maker, reason):
    if maker == "conv":
        model = build.conv()
    else:  # Flatten -> Gemm whose output is the model output
        model = build.linear_pair(np.ones(16))
        model.graph.node.pop()  # drop Identity: Gemm produces the output
        model.graph.output[0].name = "z"
    prefix, why = split_first_affine(model)
    assert prefix is None and reason in why


def test_center_input_wrapper_adds_inside_the_graph(build):
    model = build.conv()
    wrapped = runtime.open_session(with_center_input(model))
    plain = runtime.open_session(model)
    rng = np.random.default_rng(1)
    noise = rng.random((5,) + build.SHAPE).astype(np.float32)
    center = rng.random((1,) + build.SHAPE).astype(np.float32)
    np.testing.assert_allclose(wrapped.run(noise, {"smoothing_center": center}),
                               plain.run(noise + center), rtol=1e-6, atol=1e-6)
