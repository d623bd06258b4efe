"""Verification of eq. (4): verify and push_to_level against the closed forms of a linear classifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from linear import Linear, images_at
from scipy import optimize, stats

from rs_repro.attacks import push_to_level
from rs_repro.smoothing import Smooth

SIGMA = 0.25


def _level(s: float, n: int) -> float:
    """P[g_{sigma,n}(x) != 0] at signed distance s past the hyperplane: each micro-decision is wrong with
    probability Phi(s / sigma), the vote is wrong when more than n/2 are (ties go to class 0, the label)."""
    return float(stats.binom.sf(n // 2, n, stats.norm.cdf(s / SIGMA)))


def _distance_at_level(n: int, pa: float) -> float:
    """The signed distance past the hyperplane where the level of the vote reaches pa (closed form)."""
    return optimize.brentq(lambda s: _level(s, n) - pa, -5 * SIGMA, 5 * SIGMA, xtol=1e-10)


@pytest.mark.parametrize("n, pa", [(1, 0.8), (11, 0.8), (10, 0.5), (51, 0.9), (11, 0.5)])
def test_pushed_distortion_is_the_closed_form_of_a_linear_classifier(n, pa):
    model = Linear(seed=3)
    a = 0.5  # x_o is 0.5 before the hyperplane; the attack's point lies on it
    x_o, x_adv = images_at(model, [a, a]), images_at(model, [0.0, -0.25])
    pushed = push_to_level(Smooth(model, 2, SIGMA), x_o, x_adv, torch.zeros(2, dtype=torch.long), n=n, pa=pa,
                           votes=4000, seed=1, tolerance=0.002, alpha=0.001)
    target = a + max(_distance_at_level(n, pa), 0.0)  # t >= 1: never closer than the attack's own point
    # the vote's level changes by ~2.5 per sigma there; 4,000 votes resolve it to about 0.01, i.e. sigma / 25
    assert pushed.reached.all()
    assert pushed.l2[0] == pytest.approx(target, abs=SIGMA / 12)
    assert pushed.t[0] == pytest.approx(pushed.l2[0] / a)
    # the second point starts 0.25 past the hyperplane: on the same line, so the same verified point
    assert pushed.l2[1] == pytest.approx(max(target, a + 0.25), abs=SIGMA / 12)
    # the level re-estimated at the returned points with fresh votes: its 99.9% interval covers the closed form
    exact = [_level(float(model.signed_distance(x[None])), n) for x in pushed.x]
    assert all(lo <= e <= hi for lo, e, hi in zip(pushed.lower, exact, pushed.upper))
    assert np.allclose(pushed.linf, (pushed.x - x_o).flatten(1).abs().amax(1).numpy())


def test_a_point_already_adversarial_is_kept_and_one_that_never_gets_there_is_not_counted():
    model = Linear(seed=4)
    x_o = images_at(model, [0.5, 0.5, 0.5])
    x_adv = torch.cat([images_at(model, [-1.0]), x_o[1:2], images_at(model, [0.3])])  # deep past; x_o; still before
    pushed = push_to_level(Smooth(model, 2, SIGMA), x_o, x_adv, torch.zeros(3, dtype=torch.long), n=11, pa=0.8,
                           votes=200, seed=0, max_t=1.5)
    assert pushed.t[0] == 1.0 and torch.equal(pushed.x[0], x_adv[0]) and pushed.p[0] == 1.0
    assert not pushed.reached[1] and pushed.l2[1] == np.inf  # a point at x_o is verified like any other
    assert not pushed.reached[2] and pushed.t[2] == np.inf  # t = 1.5 puts it 0.35 before: never adversarial
    assert torch.equal(pushed.x[2], x_adv[2])


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


@pytest.mark.parametrize("name, value, message", [
    ("pa", 0.0, "pa must be a real number in"), ("votes", 0, "votes must be an integer >= 1"),
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
