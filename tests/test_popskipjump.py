"""PopSkipJump on the shared oracle: known hyperplanes (deterministic and very noisy), budgets, accounting,
seeds, degenerate oracles, PopBinSearch and the probe-count rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from linear import Constant, Linear, images_at

from rs_repro.attacks import Oracle, push_to_level, smoothed_oracle
from rs_repro.attacks.hsja import hsja
from rs_repro.attacks.popskipjump import Grid, pop_bin_search, popskipjump, probe_count
from rs_repro.seeds import ImageGenerators
from rs_repro.smoothing import Smooth


def _labels(b: int) -> torch.Tensor:
    return torch.zeros(b, dtype=torch.long)


def test_converges_to_the_hyperplane_on_a_deterministic_oracle():
    model = Linear(seed=1)
    distances = [0.15, 0.3]
    x = images_at(model, distances)
    oracle = Oracle(model, max_queries=20_000)
    result = popskipjump(oracle, x, _labels(2), seed=0)
    ratio = result.l2.numpy() / np.array(distances)
    assert result.success.all() and np.all(ratio >= 1 - 1e-4) and np.all(ratio <= 1.10), ratio
    curve = oracle.best_at([100, 1000, 5000, 20_000])
    assert np.all(np.diff(curve, axis=1) <= 0) and np.all(curve[:, 1] / distances < 1.5)
    assert (model(result.x_adv).argmax(1) == 1).all() and (model(result.x_final).argmax(1) == 1).all()
    # Like HSJA: about HSJA's probe counts (n_t = 100 sqrt(t)) and about a bisection's cost per search.
    steps = result.diagnostics["gradient_steps"]
    assert (result.diagnostics["bin_search_queries"] <= 25 * result.diagnostics["bin_searches"]).all()
    hsja_probes = sum(int(100 * t ** 0.5) for t in range(1, int(steps[0]) + 1))
    assert abs(result.diagnostics["gradient_probes"][0].item() / hsja_probes - 1) < 0.02
    assert result.diagnostics["rejected_searches"].sum() == 0


def _verified_ratio(attack, sigma: float, budget: int, seed: int, distances: list[float]) -> np.ndarray:
    model = Linear(seed=1)
    x = images_at(model, distances)
    smooth = Smooth(model, 2, sigma, seed=seed)
    result = attack(smoothed_oracle(smooth, 1, max_queries=budget), x, _labels(len(x)), seed=seed)
    pushed = push_to_level(smooth, x, result.x_final, _labels(len(x)), n=1, pa=0.5, votes=200, seed=seed)
    return pushed.l2 / np.array(distances)


def test_very_noisy_oracle_verified_distortion_approaches_the_hyperplane_and_beats_hsja():
    # g_{sigma,1} of a linear classifier answers adversarial with probability Phi(signed distance / sigma): the
    # smoothed boundary is the hyperplane itself, so the verified distortion (eq. (4) at P_a = 1/2, pushed
    # along the attack's own direction) is distance / cos(angle to the normal), >= the distance. sigma = 0.03
    # against distances 0.25-0.45: the answer is a coin toss over +-0.03 around the boundary, where HSJA's
    # bisection and its 100 sqrt(t) probes fail (its ratio stays about 1.6-1.8 up to 20,000 queries), while
    # PSJ's ratio falls from about 1.4 to about 1.1 (0.5 s a run). Medians over 3 images and 2 seeds.
    distances = [0.25, 0.35, 0.45]
    budgets = (1000, 5000, 20_000)
    psj = [np.median([_verified_ratio(popskipjump, 0.03, q, s, distances) for s in (0, 1)]) for q in budgets]
    ref = [np.median([_verified_ratio(hsja, 0.03, q, s, distances) for s in (0, 1)]) for q in budgets]
    assert np.all(np.diff(psj) < 0), psj  # the error shrinks with the budget
    assert 1 <= psj[-1] <= 1.2, psj  # within 20% of the hyperplane distance at 20,000 queries
    assert all(p <= 0.9 * h for p, h in zip(psj, ref, strict=True)), (psj, ref)  # no worse than HSJA, by 10%


@pytest.mark.parametrize("budget", [1, 2, 13, 150, 377])
def test_budget_is_never_exceeded_and_every_query_is_counted(budget):
    model = Linear()
    x = images_at(model, [0.1, 0.25, 0.4])
    result = popskipjump(Oracle(model, max_queries=budget), x, _labels(3), seed=1)
    assert model.rows == result.queries.sum().item() and len(result.history) == model.rows
    assert result.queries.tolist() == [budget] * 3  # a linear boundary always leaves work to do
    assert result.success.tolist() == result.history.groupby("image").adversarial.any().tolist()
    assert result.success.all() or budget < 150


@pytest.mark.parametrize("n", [1, 3])
def test_smoothed_oracle_counts_forward_passes_and_ends_within_budget(n):
    model = Linear()
    x = images_at(model, [0.0, 0.05, 0.3])  # on, near and away from the boundary
    result = popskipjump(smoothed_oracle(Smooth(model, 2, 0.25, seed=0), n, max_queries=600), x, _labels(3), seed=0)
    # every forward pass is booked; a vote stops once settled, after n // 2 + 1 to n micro-decisions
    assert (result.queries <= 600).all() and model.rows == result.forward_passes.sum().item()
    assert ((n // 2 + 1) * result.queries <= result.forward_passes).all()
    assert (result.forward_passes <= n * result.queries).all()
    assert torch.isfinite(result.x_final).all() and result.x_final.min() >= 0 and result.x_final.max() <= 1


def test_same_seed_same_output_different_seed_different_output():
    model = Linear()
    x = images_at(model, [0.2, 0.3])
    runs = [popskipjump(Oracle(model, max_queries=400), x, _labels(2), seed=s) for s in (7, 7, 8)]
    assert torch.equal(runs[0].x_final, runs[1].x_final) and runs[0].history.equals(runs[1].history)
    assert not torch.equal(runs[0].x_final, runs[2].x_final)


def test_constant_classifier_ends_within_budget_without_success():
    model = Constant()
    result = popskipjump(Oracle(model, max_queries=1000), torch.full((2, 1, 8, 8), 0.5), _labels(2), seed=0,
                         init_tries=30)
    assert result.queries.tolist() == [31, 31] and model.rows == 62  # one check, 30 draws
    assert not result.success.any() and torch.isinf(result.l2).all()
    assert not torch.isnan(result.x_final).any() and torch.equal(result.x_final, torch.full((2, 1, 8, 8), 0.5))


def test_already_misclassified_image_costs_one_query_at_distortion_zero():
    model = Linear()
    x = images_at(model, [-0.2, 0.2])  # the first is on the adversarial side already
    result = popskipjump(Oracle(model, max_queries=300), x, _labels(2), seed=0)
    assert result.l2[0].item() == 0 and result.success[0] and result.queries[0].item() == 1
    assert torch.equal(result.x_adv[0], x[0]) and result.queries[1].item() == 300


def test_every_loop_is_capped_when_nothing_but_the_first_noise_is_adversarial():
    calls = []

    def decide(xs: torch.Tensor, ys: torch.Tensor, images: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        calls.append(len(xs))  # call 1: the clean check; call 2: the noise
        return torch.full((len(xs),), len(calls) == 2), np.ones(len(xs), dtype=np.int64)

    result = popskipjump(Oracle(None, max_queries=10**6, decide=decide), torch.full((1, 1, 8, 8), 0.5), _labels(1),
                         seed=0, num_iterations=3, max_bin_queries=40)
    assert result.queries.item() == sum(calls) < 1000
    assert result.diagnostics["rejected_searches"].item() == result.diagnostics["bin_searches"].item() == 4
    noise = ImageGenerators(0, ("popskipjump",), [0]).draw(torch.tensor([0]), (1, 8, 8), "uniform", torch.float32)
    assert torch.equal(result.x_adv, noise) and torch.equal(result.x_final, noise)  # no search was accepted


def _segment_search(decide, far_position: float, **kwargs):
    """PopBinSearch on one segment of length 1 along the Linear model's normal, boundary at 1 / far_position."""
    model = Linear()
    x0 = images_at(model, [0.5])
    far = x0 + far_position * model.w.view(1, 1, 8, 8)
    oracle = Oracle(model if decide is None else None, max_queries=10_000, decide=decide)
    oracle.start(x0, _labels(1))
    search = {"window": 10, "batch": 8, "max_queries": 500, "confidence": 0.9, **kwargs}
    return model, far, pop_bin_search(oracle, x0, far, torch.tensor([0]), Grid(100, 31), **search)


def test_pop_bin_search_on_a_deterministic_segment_costs_about_a_bisection():
    model, _, found = _segment_search(None, 0.8)  # boundary at u = 0.5 / 0.8 = 0.625
    assert found.accepted.tolist() == [True] and model(found.x).argmax(1).item() == 1
    assert 0 < model.signed_distance(found.x).item() <= 0.8 / 100 + 1e-6  # within one grid step, adversarial side
    assert found.queries.item() <= 20 and found.slope.item() == 100.0


def test_pop_bin_search_finds_the_half_probability_point_of_a_noisy_segment():
    gen = torch.Generator().manual_seed(0)
    w = Linear().w

    def decide(xs: torch.Tensor, ys: torch.Tensor,
               images: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:  # P(adversarial) = Phi(distance / 0.05)
        return (xs.flatten(1) @ w + 0.05 * torch.randn(len(xs), generator=gen)) > 0, np.ones(len(xs), dtype=np.int64)

    _, _, found = _segment_search(decide, 1.0)  # p = 1/2 at u = 0.5; slope 1 / (0.05 sqrt(2 pi)) ~ 8
    u = 0.5 + (found.x.flatten() @ w).item()
    assert found.accepted.tolist() == [True] and abs(u - 0.5) < 0.05 and 2 < found.slope.item() < 30
    assert found.queries.item() <= 500


def test_probe_count_matches_hsja_when_deterministic_and_grows_with_noise():
    slopes = torch.logspace(-1, 2, 31, dtype=torch.float64)
    counts = probe_count(100.0, slopes, 100, 10**9)
    assert abs(counts[-1].item() - 100) <= 1  # s = 100 = G: the same cosine as HSJA with 100 probes
    assert torch.all(counts[1:] <= counts[:-1]) and counts[0] > 10**5
    assert probe_count(100.0, slopes, 100, 10_000).max().item() == 10_000


@pytest.mark.parametrize(("name", "value"), [("seed", 1.5), ("num_iterations", 0), ("init_tries", True),
                                             ("init_num_evals", 0), ("max_num_evals", 0), ("grid_size", 1),
                                             ("num_slopes", 0), ("bin_window", 0), ("bin_batch", 0),
                                             ("max_bin_queries", 0), ("bin_confidence", 1.0),
                                             ("bin_confidence", float("nan"))])
def test_bad_parameters_are_named(name, value):
    model = Linear()
    with pytest.raises(ValueError, match=name):
        popskipjump(Oracle(model, max_queries=10), images_at(model, [0.2]), _labels(1), **{"seed": 0, name: value})
