"""SurFree on a linear toy classifier (exact boundary distance known), on budgets, seeds and the n = 1 oracle."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from linear import Linear, images_at

from rs_repro.attacks.oracle import AttackResult, Oracle, smoothed_oracle
from rs_repro.attacks.surfree import dct_matrix, surfree, zigzag_mask
from rs_repro.smoothing import Smooth

BUDGETS = [1, 10, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]


def _dct_2d(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions [..., H, W], built from dct_matrix as SurFree's."""
    ch, cw = (dct_matrix(n, dtype=x.dtype) for n in x.shape[-2:])
    return ch @ x @ cw.T


def _idct_2d(coeffs: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_dct_2d` (the transposed matrices: the DCT-III)."""
    ch, cw = (dct_matrix(n, dtype=coeffs.dtype) for n in coeffs.shape[-2:])
    return ch.T @ coeffs @ cw


def _low_frequency_normal(seed: int) -> torch.Tensor:
    """A unit normal in the span of the default basis (first half of the zig-zag DCT coefficients)."""
    g = torch.Generator().manual_seed(seed)
    coeffs = torch.randn(8, 8, generator=g, dtype=torch.float64) * zigzag_mask(8, 8)
    return _idct_2d(coeffs)


def _run(model: Linear, distances: list[float], budget: int, **kwargs) -> tuple[Oracle, AttackResult, torch.Tensor]:
    x = images_at(model, distances)
    oracle = Oracle(model, max_queries=budget)
    result = surfree(oracle, x, torch.zeros(len(distances), dtype=torch.long), **kwargs)
    return oracle, result, x


def _check_books(model: Linear, oracle: Oracle, result: AttackResult, budget: int) -> None:
    """Budget never exceeded, every query (initialisation included) counted, anytime curves non-increasing."""
    assert (result.queries <= budget).all()
    assert model.rows == int(result.queries.sum())
    curves = oracle.best_at(BUDGETS)
    finite = np.where(np.isinf(curves), 1e9, curves)
    assert (np.diff(finite, axis=1) <= 0).all()
    assert np.allclose(curves[:, -1], result.l2.numpy())


def test_dct_is_orthonormal_and_matches_scipy():
    for n in (1, 5, 8, 13):
        c = dct_matrix(n)
        assert torch.allclose(c @ c.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    x = torch.rand(2, 3, 8, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    coeffs = _dct_2d(x)
    assert torch.allclose(_idct_2d(coeffs), x, atol=1e-12)
    assert torch.allclose(coeffs.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1))
    reference = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1))
    assert np.allclose(coeffs.numpy(), reference, atol=1e-12)


def test_zigzag_mask_keeps_the_low_frequencies_in_the_reference_order():
    mask = zigzag_mask(8, 8)
    assert int(mask.sum()) == 32 and mask[0, 0] and not mask[7, 7]
    assert zigzag_mask(8, 8, (0, 3 / 64)).nonzero().tolist() == [[0, 0], [0, 1], [1, 0]]
    assert zigzag_mask(8, 8, (0, 4 / 64)).nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [2, 0]]
    assert zigzag_mask(8, 8, (0, 1)).all()
    assert int(zigzag_mask(1, 1).sum()) == 1  # at least one coefficient


def test_converges_to_the_exact_distance_of_a_hyperplane():
    model = Linear(seed=0)
    distances = [0.1, 0.25, 0.5]
    oracle, result, _ = _run(model, distances, 20_000, seed=0, frequency_range=(0.0, 1.0))
    _check_books(model, oracle, result, 20_000)
    ratios = oracle.best_at([2_000, 20_000]) / np.array(distances)[:, None]
    assert (ratios[:, 1] <= 1.1).all(), ratios
    assert (ratios >= 1 - 1e-4).all()  # no query closer than the hyperplane was answered adversarial
    assert (model.signed_distance(result.x_adv) >= -1e-6).all()  # adversarial up to float32 rounding
    assert result.success.all()


def test_default_low_frequency_basis_reaches_a_low_frequency_hyperplane():
    model = Linear(w=_low_frequency_normal(1))
    distances = [0.1, 0.3]
    oracle, result, _ = _run(model, distances, 20_000, seed=1)
    _check_books(model, oracle, result, 20_000)
    assert (result.l2.numpy() / np.array(distances) <= 1.1).all()


@pytest.mark.parametrize("budget", [1, 2, 9, 30, 200])
def test_budget_is_hard_and_initialisation_is_counted(budget):
    model = Linear(seed=2)
    oracle, result, _ = _run(model, [0.2, 0.4], budget, seed=0)
    _check_books(model, oracle, result, budget)
    assert result.queries.tolist() == [budget, budget]  # the attack runs until the budget is spent...
    if budget >= 200:
        assert result.success.all()


def test_no_adversarial_start_gives_up_after_the_capped_tries():
    model = Linear(seed=0, b=-100.0)  # nothing in [0, 1]^64 is of class 1
    _, result, _ = _run(model, [0.2], 1000, seed=0, init_tries=7)
    assert result.queries.tolist() == [1 + 7] and model.rows == 8
    assert not result.success.any() and np.isinf(result.l2.numpy()).all()


def test_already_misclassified_images_cost_one_query_and_have_distortion_zero():
    model = Linear(seed=3)
    oracle, result, x = _run(model, [-0.2, 0.3], 300, seed=0)  # the first image is on the class-1 side
    assert result.queries[0].item() == 1 and result.l2[0].item() == 0.0 and result.success[0]
    assert torch.equal(result.x_adv[0], x[0])
    assert result.queries[1].item() == 300 and result.l2[1].item() > 0.3 * (1 - 1e-4)
    _check_books(model, oracle, result, 300)


def test_same_seed_same_output_different_seed_different_output():
    runs = []
    for seed in (5, 5, 6):
        model = Linear(seed=4)
        _, result, _ = _run(model, [0.2, 0.35], 400, seed=seed)
        runs.append(result)
    assert torch.equal(runs[0].x_adv, runs[1].x_adv)
    assert runs[0].history.equals(runs[1].history)
    assert not torch.equal(runs[0].x_adv, runs[2].x_adv)


@pytest.mark.parametrize("pa", [None, 0.5])
def test_random_oracle_with_one_noise_draw_stays_within_budget(pa):
    model = Linear(seed=0)
    x = images_at(model, [0.0, 0.05, 0.3])  # on, near and far from the boundary
    smooth = Smooth(model, 2, 0.25, seed=0)
    oracle = smoothed_oracle(smooth, 1, pa, max_queries=400)
    result = surfree(oracle, x, torch.zeros(3, dtype=torch.long), seed=0)
    assert (result.queries <= 400).all() and model.rows == int(result.queries.sum())
    assert torch.isfinite(result.x_adv).all() and ((result.x_adv >= 0) & (result.x_adv <= 1)).all()
    hist = result.history
    assert hist.groupby("image")["query"].max().le(400).all()


@pytest.mark.parametrize(("name", "value"), [("theta_max", 0.0), ("theta_max", 95.0), ("rho", 1.5),
                                             ("n_ortho", -1), ("sign_trials", 0), ("bs_max_iteration", 0),
                                             ("frequency_range", (0.5, 0.5)), ("init_tries", 0)])
def test_bad_parameters_are_refused(name, value):
    model = Linear()
    x = images_at(model, [0.2])
    with pytest.raises(ValueError, match=name):
        surfree(Oracle(model, max_queries=10), x, torch.zeros(1, dtype=torch.long), seed=0, **{name: value})
    with pytest.raises(ValueError, match="x"):
        surfree(Oracle(model, max_queries=10), x + 2, torch.zeros(1, dtype=torch.long), seed=0)
