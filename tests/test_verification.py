"""Confirmation of eq. (4): verify, push_to_level and push_candidates against the closed forms of a linear
classifier inside the pixel box."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from linear import Linear, images_at
from scipy import optimize, stats

from rs_repro.attacks import push_candidates, push_to_level, verification
from rs_repro.attacks.verification import box_path, saturation
from rs_repro.smoothing import Smooth

SIGMA = 0.25


def _level(s: float, n: int) -> float:
    """P[g_{sigma,n}(x) != 0] at signed distance s past the hyperplane: each micro-decision is wrong with
    probability q = Phi(s / sigma); the vote is wrong when more than n/2 are, and with probability 1/2 on a tie
    (even n: ties are broken at random)."""
    q = stats.norm.cdf(s / SIGMA)
    tie = 0.5 * stats.binom.pmf(n // 2, n, q) if n % 2 == 0 else 0.0
    return float(stats.binom.sf(n // 2, n, q) + tie)


def _dark_image(model: Linear, before: float) -> tuple[torch.Tensor, torch.Tensor]:
    """An image x_o of dark pixels (0.04, as on a black background) ``before`` the hyperplane (b set so), and an
    attack's point x_o + 0.1 w: along its ray the pixels where w < 0 reach 0 before the crossing, so the
    box-projected path crosses later than the straight line."""
    x_o = torch.full((64,), 0.04)
    model.b = float(-before - x_o @ model.w)
    return x_o.view(1, 1, 8, 8), (x_o + 0.1 * model.w).view(1, 1, 8, 8)


def _path_level(model: Linear, x_o: torch.Tensor, delta: torch.Tensor, t: float, n: int) -> float:
    return _level(float(model.signed_distance(box_path(x_o, delta, t))[0]), n)


@pytest.mark.parametrize("n", [10, 11])
@pytest.mark.parametrize("pa", [0.5, 0.8])
def test_confirmed_points_are_images_at_level_and_near_the_exact_crossing(n, pa):
    """At the book's sizes (32 votes per search decision, 256 per confirmation, alpha 0.05), 40 images; the
    overshoot past the crossing is that of a one-sided test of 256 votes, largest at small n (about 8% at
    n = 11, 3% at n = 101)."""
    model = Linear(seed=3)
    x_o, x_adv = _dark_image(model, before=0.4)
    delta = x_adv - x_o
    crossing = optimize.brentq(lambda t: _path_level(model, x_o, delta, t, n) - pa, 1.0, saturation(x_o, delta))
    exact = float((box_path(x_o, delta, crossing) - x_o).norm())
    straight = optimize.brentq(lambda t: _level(float(model.signed_distance(x_o + t * delta)[0]), n) - pa, 1.0, 100.0)
    assert crossing > 1.1 * straight  # the box matters here: the straight line (outside the box) crosses earlier
    images = 40
    pushed = push_to_level(Smooth(model, 2, SIGMA), x_o.repeat(images, 1, 1, 1), x_adv.repeat(images, 1, 1, 1),
                           torch.zeros(images, dtype=torch.long), n=n, pa=pa, votes=32, confirm_votes=256, seed=1)
    assert pushed.confirmed.all() and np.isfinite(pushed.l2).all()
    assert pushed.x.min() >= 0 and pushed.x.max() <= 1  # images, every one
    levels = np.array([_level(float(s), n) for s in model.signed_distance(pushed.x)])
    assert (levels < pa).mean() <= 0.05  # confirmed at 1 - alpha: in fact none is below
    ratio = pushed.l2 / exact
    assert np.median(ratio) <= 1.10 and ratio.max() <= 1.3  # not needlessly conservative
    assert (pushed.lower >= pa).all() and (pushed.alpha <= 0.05 / 2).all() and (pushed.votes == 256)
    assert np.allclose(pushed.l2, (pushed.x - x_o).flatten(1).norm(dim=1).numpy(), rtol=1e-5)


@pytest.mark.parametrize("n", [10, 11])
def test_with_more_votes_the_confirmed_distortion_is_within_a_few_percent_of_the_crossing(n):
    model = Linear(seed=3)
    x_o, x_adv = _dark_image(model, before=0.4)
    delta = x_adv - x_o
    crossing = optimize.brentq(lambda t: _path_level(model, x_o, delta, t, n) - 0.5, 1.0, saturation(x_o, delta))
    exact = float((box_path(x_o, delta, crossing) - x_o).norm())
    pushed = push_to_level(Smooth(model, 2, SIGMA), x_o.repeat(10, 1, 1, 1), x_adv.repeat(10, 1, 1, 1),
                           torch.zeros(10, dtype=torch.long), n=n, pa=0.5, votes=400, confirm_votes=4000, seed=2,
                           tolerance=0.002)
    assert pushed.confirmed.all()
    error = pushed.l2 / exact - 1
    # a failed confirmation steps outward (1 + tolerance 2^(j-1)); the eighth and last attempt lies about 13%
    # past t_c: 1 image of 100 needed it (seeds 0 to 9), the others were within 6%
    assert np.median(error) <= 0.04 and (error <= 0.06).mean() >= 0.8 and error.max() <= 0.15
    assert error.min() >= -0.01


def test_a_path_that_cannot_reach_the_level_inside_the_box_is_a_failure():
    """The boundary x_0 = 1.2 lies outside the box: the straight ray crosses it, the box-projected path stops at
    x_0 = 1, where a micro-decision is wrong with probability Phi(-0.8) and a vote of 11 with 0.012."""
    w = torch.zeros(64)
    w[0] = 1.0
    model = Linear(w=w, b=-1.2)
    x_o = torch.full((2, 1, 8, 8), 0.5)
    x_adv = x_o.clone()
    x_adv[:, 0, 0, 0] = 0.9
    pushed = push_to_level(Smooth(model, 2, SIGMA), x_o, x_adv, torch.zeros(2, dtype=torch.long), n=11, pa=0.5,
                           votes=32, seed=0)
    assert not pushed.confirmed.any() and np.isinf(pushed.l2).all() and np.isinf(pushed.t).all()
    assert torch.equal(pushed.x, x_adv)  # the attack's own point, never one outside the box


def test_a_point_already_adversarial_is_kept_and_one_at_x_o_is_confirmed_like_any_other():
    model = Linear(seed=4)
    x_o = images_at(model, [0.5, 0.5, 0.5])
    x_adv = torch.cat([images_at(model, [-1.0]), x_o[1:2], images_at(model, [0.3])])  # deep past; x_o; still before
    pushed = push_to_level(Smooth(model, 2, SIGMA), x_o, x_adv, torch.zeros(3, dtype=torch.long), n=11, pa=0.8,
                           votes=50, seed=0, max_t=1.5)
    assert pushed.t[0] == 1.0 and torch.equal(pushed.x[0], x_adv[0]) and pushed.p[0] == 1.0
    assert not pushed.confirmed[1] and pushed.l2[1] == np.inf  # x_o is not adversarial
    assert not pushed.confirmed[2] and pushed.t[2] == np.inf  # t = 1.5 puts it 0.35 before: never adversarial
    assert pushed.attempts[1] == 0 and np.isnan(pushed.lower[1])  # the search never reached the level: no test


def test_a_candidate_nearer_the_crossing_wins_and_the_confidence_is_shared():
    model = Linear(seed=6)
    x_o = images_at(model, [0.4, 0.4])
    far = images_at(model, [-0.5, -0.5])  # confirmed at t = 1, 0.9 from x_o
    near = images_at(model, [0.2, 0.4])  # first image: on the same line, pushed to about 0.45; second: at x_o
    found = push_candidates(Smooth(model, 2, SIGMA), x_o, {"far": far, "near": near}, torch.zeros(2, dtype=torch.long),
                            n=11, pa=0.5, votes=32, seed=0, alpha=0.05)
    assert found.source.tolist() == ["near", "far"]
    assert found.best.l2[0] == found.each["near"].l2[0] < found.each["far"].l2[0]
    assert found.best.l2[1] == found.each["far"].l2[1] and not found.each["near"].confirmed[1]
    assert np.nanmax(found.each["far"].alpha) <= 0.05 / 2 / 2  # alpha / C for the candidate, half of it first
    assert torch.equal(found.best.x[1], found.each["far"].x[1])


def test_same_seed_same_points_and_an_image_does_not_depend_on_the_others():
    model = Linear(seed=5)
    x_o, x_adv = images_at(model, [0.5, 0.4]), images_at(model, [0.0, 0.0])
    smooth, y = Smooth(model, 2, SIGMA), torch.zeros(2, dtype=torch.long)
    first = push_to_level(smooth, x_o, x_adv, y, n=11, pa=0.8, votes=100, seed=2)
    again = push_to_level(smooth, x_o, x_adv, y, n=11, pa=0.8, votes=100, seed=2)
    other_first = push_to_level(smooth, images_at(model, [0.9, 0.4]), images_at(model, [-0.2, 0.0]), y, n=11, pa=0.8,
                                votes=100, seed=2)
    assert torch.equal(first.x, again.x) and np.array_equal(first.p, again.p)
    assert first.t[1] == other_first.t[1] and first.p[1] == other_first.p[1]
    assert push_to_level(smooth, x_o, x_adv, y, n=11, pa=0.8, votes=100, seed=3).t.tolist() != first.t.tolist() \
        or push_to_level(smooth, x_o, x_adv, y, n=11, pa=0.8, votes=100, seed=4).t.tolist() != first.t.tolist()


def test_saturation_is_where_the_box_projected_path_stops_moving():
    x_o = torch.tensor([0.2, 0.5, 0.0, 1.0])
    delta = torch.tensor([0.1, -0.25, -0.3, 0.0])
    assert saturation(x_o, delta) == pytest.approx(8.0)  # the first pixel reaches 1 at t = 8, the second 0 at t = 2
    assert torch.equal(box_path(x_o, delta, 100.0), torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert saturation(x_o, torch.zeros(4)) == 0.0


@pytest.mark.parametrize("name, value, message", [
    ("pa", 0.0, "pa must be a real number in"), ("pa", 1.0, "pa must be a real number in"),
    ("votes", 0, "votes must be an integer >= 1"), ("confirm_votes", 0, "confirm_votes must be an integer >= 1"),
    ("attempts", 0, "attempts must be an integer >= 1"), ("alpha", 1.0, "alpha must be a real number in"),
    ("n", 0, "n must be an integer >= 1"), ("max_t", 0.5, "max_t must be"), ("tolerance", 1.5, "tolerance must be"),
])
def test_bad_arguments_name_the_parameter(name, value, message):
    model = Linear()
    x = images_at(model, [0.5])
    arguments = {"n": 11, "pa": 0.8, "votes": 10, "seed": 0, name: value}
    with pytest.raises(ValueError, match=message):
        push_to_level(Smooth(model, 2, SIGMA), x, x, torch.zeros(1, dtype=torch.long), **arguments)
    with pytest.raises(ValueError, match="x_adv must be the shape of x_o"):
        push_to_level(Smooth(model, 2, SIGMA), x, images_at(model, [0.5, 0.1]), torch.zeros(1, dtype=torch.long),
                      n=11, pa=0.8, votes=10, seed=0)
    with pytest.raises(ValueError, match="x_adv"):
        push_to_level(Smooth(model, 2, SIGMA), x, x + 2.0, torch.zeros(1, dtype=torch.long), n=11, pa=0.8,
                      votes=10, seed=0)


@pytest.mark.parametrize("n, votes, needed", [(11, 32, 20), (10, 256, 150), (1, 40, 40)])
def test_a_curtailed_test_has_the_law_of_the_full_count(n, votes, needed):
    """At a point of known level L, the test that stops once settled passes with P[Bin(votes, L) >= needed],
    exactly the law of counting every vote, and never draws more than ``votes``."""
    from rs_repro.attacks.verification import _settle
    from rs_repro.seeds import generator

    model = Linear(seed=7)
    x = images_at(model, [-0.02])  # 0.02 past the hyperplane: a micro-decision is wrong with Phi(0.08)
    level = _level(0.02, n)
    smooth, trials = Smooth(model, 2, SIGMA), 600
    # every trial its own test, all settled together (each draws from its own generator)
    passed, wrong, drawn, _ = _settle(smooth, x.expand(trials, -1, -1, -1), torch.zeros(trials, dtype=torch.long), n,
                                      np.full(trials, votes), np.full(trials, needed), 10_000,
                                      [generator(0, "curtailed", k) for k in range(trials)])
    exact = stats.binom.sf(needed - 1, votes, level)
    assert abs(passed.mean() - exact) <= 4 * np.sqrt(exact * (1 - exact) / trials) + 1e-9
    assert drawn.max() <= votes and ((wrong >= needed) == passed).all()
    # far from the level the answer is settled after the first chunk
    x_o = images_at(model, [0.5])
    far = _settle(smooth, x_o, torch.zeros(1, dtype=torch.long), n, np.array([votes]), np.array([needed]), 10_000,
                  [generator(0, "far")])
    size = max(verification.VOTE_CHUNK, math.ceil(verification.CHUNK_ROWS / n))  # votes per chunk
    assert (far[0][0], far[1][0]) == (False, 0) and (far[2][0] < votes or size >= votes)


@pytest.mark.parametrize("batch_size", [10_000, 700])
def test_tests_settled_together_answer_as_each_alone(batch_size):
    """Tests at points of different levels, with different sizes and thresholds, settled in one lockstep give
    each the answer, counts and forward passes it gives alone (its own generator), whatever ``batch_size``."""
    from rs_repro.attacks.verification import _settle
    from rs_repro.seeds import generator

    model = Linear(seed=7)
    points = images_at(model, [-0.02, 0.1, -0.3, 0.0, 0.02, -0.01])
    labels = torch.tensor([0, 0, 0, 1, 0, 1])
    votes, needed = np.array([32, 256, 40, 100, 17, 64]), np.array([20, 150, 1, 60, 9, 64])
    together = _settle(Smooth(model, 2, SIGMA), points, labels, 11, votes, needed, batch_size,
                       [generator(1, "together", k) for k in range(6)])
    for k in range(6):
        alone = _settle(Smooth(model, 2, SIGMA), points[k:k + 1], labels[k:k + 1], 11, votes[k:k + 1], needed[k:k + 1],
                        batch_size, [generator(1, "together", k)])
        assert [int(a[0]) for a in alone] == [int(a[k]) for a in together]
    assert together[0].any() and not together[0].all()


def test_a_candidate_that_cannot_beat_the_one_before_spends_nothing():
    model = Linear(seed=6)
    x_o = images_at(model, [0.4])
    near, far = images_at(model, [0.2]), images_at(model, [-0.6])  # far starts 1.0 from x_o
    found = push_candidates(Smooth(model, 2, SIGMA), x_o, {"near": near, "far": far}, torch.zeros(1, dtype=torch.long),
                            n=11, pa=0.5, votes=32, seed=0)
    assert found.source.tolist() == ["near"] and found.best.l2[0] < 1.0
    assert found.each["far"].forward_passes[0] == 0 and not found.each["far"].confirmed[0]
    assert found.best.forward_passes[0] == found.each["near"].forward_passes[0] > 0
    # the cap of push_to_level itself: nothing confirmed below a distortion the path cannot confirm under
    capped = push_to_level(Smooth(model, 2, SIGMA), x_o, near, torch.zeros(1, dtype=torch.long), n=11, pa=0.5,
                           votes=32, seed=0, max_l2=np.array([0.3]))
    assert not capped.confirmed[0] and np.isinf(capped.l2[0])
