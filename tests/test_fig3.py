"""Fig. 3 chapter: the boundary of g_sigma on a segment and the spread of bisections against g_{sigma,n}."""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn

from rs_repro.experiments import fig3_binary_search as ex
from rs_repro.smoothing import Smooth


class Halfspace(nn.Module):
    """Class 1 where the first pixel exceeds 0.5, class 0 otherwise: the boundary crosses [a, b] at t = 1/2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1)[:, 0] - 0.5
        return torch.stack((-s, s), dim=1)


def _segment():
    a = torch.zeros(1, 1, 8, 8)
    b = a.clone()
    b[0, 0, 0, 0] = 1.0
    return a, b


def test_boundary_of_g_interpolates_the_crossing():
    profile = pd.DataFrame({"t": [0.0, 0.5, 1.0], "p_label": [0.9, 0.6, 0.2], "p_other": [0.1, 0.4, 0.8]})
    assert math.isclose(ex.boundary_of_g(profile), 0.5 + 0.5 * 0.2 / (0.2 + 0.6))
    assert math.isnan(ex.boundary_of_g(profile.assign(p_other=0.0)))


def test_profile_and_bisections_on_a_halfspace():
    a, b = _segment()
    smooth = Smooth(Halfspace(), 2, 0.05, seed=0)
    profile = ex.class_profile(smooth, a, b, 0, [i / 20 for i in range(21)], 4000, seed=1)
    assert abs(ex.boundary_of_g(profile) - 0.5) < 0.02  # a flat boundary: g_sigma = f (paper, section 3.1)
    assert abs(ex.base_boundary(Halfspace(), a, b, 0, 30) - 0.5) < 1e-6
    spread = {n: ex.bisection_outputs(smooth, a, b, 0, n, 300, 15, seed=2).t.std() for n in (1, 100)}
    assert spread[100] < spread[1]
    outputs = ex.bisection_outputs(smooth, a, b, 0, 100, 300, 15, seed=2)
    assert abs(outputs.t.mean() - 0.5) < 0.02 and (outputs.queries == 15).all()
    assert outputs.equals(ex.bisection_outputs(smooth, a, b, 0, 100, 300, 15, seed=2))  # same seed, same output
