"""Tests of rs_repro.hidden_noise (Pinot et al. 2019: noise at the first affine layer) with known answers.

The reference is nn.Sequential(Flatten, Linear(64, 2)) with rows (-w, w), ||w|| = 1 and bias 0: at an input of
signed distance s = w.x to the hyperplane the noisy logits are (-s + e1, s + e2), so class 1 wins iff
e1 - e2 < 2 s. Gaussian noise of standard deviation ``scale``: P[class 1] = Phi(sqrt(2) s / scale). Laplace
noise Laplace(0, b), b = scale / sqrt(2): D = e2 - e1 has density (1 + |z| / b) exp(-|z| / b) / (4 b) and, for
z >= 0, P[D <= z] = 1 - exp(-z / b) (2 + z / b) / 4; P[class 1] = P[D <= 2 s]. Statistical checks use fixed
seeds and error bars of 5 binomial standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch
from torch import nn

from rs_repro import models, seeds, theory
from rs_repro.attacks.oracle import smoothed_oracle
from rs_repro.attacks.verification import push_to_level
from rs_repro.hidden_noise import LAWS, HiddenNoise, match_accuracy
from rs_repro.noise import ImageStreams, SharedNoise
from rs_repro.smoothing import Smooth

Z = 5.0  # width of the statistical error bars, in standard errors


def linear_model(seed: int = 0) -> tuple[nn.Sequential, torch.Tensor]:
    """Flatten then Linear(64, 2) with rows (-w, w), bias 0, ||w|| = 1; returns the model and w [64]."""
    w = torch.randn(64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    w = (w / w.norm()).float()
    layer = nn.Linear(64, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.stack((-w, w)))
        layer.bias.zero_()
    return nn.Sequential(nn.Flatten(), layer).eval(), w


def at_distances(w: torch.Tensor, distances: list[float]) -> torch.Tensor:
    """Inputs [m, 1, 8, 8] near the centre 0.5 at signed distances ``distances`` (s = w.x) to the hyperplane."""
    base = torch.full((64,), 0.5)
    base -= (base @ w) * w
    return torch.stack([base + s * w for s in distances]).view(-1, 1, 8, 8)


def p_class_one(s: float, scale: float, law: str) -> float:
    """The closed form of P[class 1] at signed distance s (see the module's docstring)."""
    if law == "gaussian":
        return float(scipy.stats.norm.cdf(math.sqrt(2.0) * s / scale))
    b = scale / math.sqrt(2.0)
    z = abs(2.0 * s) / b
    upper = 1.0 - math.exp(-z) * (2.0 + z) / 4.0  # P[D <= |2 s|]
    return upper if s >= 0 else 1.0 - upper


def test_laplace_closed_form_is_a_cdf() -> None:
    # The derived CDF of the difference of two Laplace(b) against numerical integration of its density.
    b = 0.7

    def density(t: float) -> float:
        return (1 + abs(t) / b) * math.exp(-abs(t) / b) / (4 * b)

    for s in (-1.0, -0.2, 0.0, 0.3, 1.5):
        integral = scipy.integrate.quad(density, -np.inf, 2 * s)[0]
        assert p_class_one(s, b * math.sqrt(2.0), "laplace") == pytest.approx(integral, abs=1e-9)


@pytest.mark.parametrize("law", LAWS)
def test_linear_counts_match_closed_form(law: str) -> None:
    scale, n = 0.5, 20_000
    model, w = linear_model(seed=1)
    distances = [-0.6, -0.2, 0.0, 0.05, 0.25, 0.8]
    xs = at_distances(w, distances)
    noisy = HiddenNoise(model, 2, scale, law=law, seed=3)
    counts = noisy.counts(xs, n, batch_size=7000)  # chunks span images
    assert counts.shape == (len(distances), 2) and counts.dtype == torch.int64
    assert counts.sum(1).tolist() == [n] * len(distances)
    for (_, c1), s in zip(counts.tolist(), distances, strict=True):
        p = p_class_one(s, scale, law)
        assert abs(c1 / n - p) <= Z * math.sqrt(p * (1 - p) / n), (law, s, c1 / n, p)


def test_noise_is_after_the_first_layer_and_leaves_the_model_alone() -> None:
    scale, n = 0.5, 20_000
    model, w = linear_model(seed=2)
    layer = model[1]
    xs = at_distances(w, [0.5 * scale])
    before = model(xs).detach()
    hidden = HiddenNoise(model, 2, scale, seed=0).counts(xs, n)
    assert not layer._forward_hooks and not layer._forward_pre_hooks  # no hook left behind
    assert torch.equal(model(xs).detach(), before) and torch.equal(model(xs).detach(), before)
    # Input noise of the same sigma: class 1 w.p. Phi(s / sigma) = Phi(0.5) = 0.69, hidden noise Phi(0.71) = 0.76.
    pixel = Smooth(model, 2, scale, seed=0).counts(xs, n)
    assert not torch.equal(hidden, pixel)
    for counts, p in ((pixel, scipy.stats.norm.cdf(0.5)), (hidden, scipy.stats.norm.cdf(math.sqrt(2) * 0.5))):
        assert abs(counts[0, 1].item() / n - p) <= Z * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("law", LAWS)
def test_same_generator_state_same_counts(law: str) -> None:
    model, w = linear_model(seed=3)
    xs = at_distances(w, [-0.1, 0.0, 0.1])
    noisy = HiddenNoise(model, 2, 1.0, law=law)
    first = noisy.counts(xs, 500, batch_size=333, generator=torch.Generator().manual_seed(7))
    again = noisy.counts(xs, 500, batch_size=333, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    gen = torch.Generator().manual_seed(7)
    noisy.counts(xs, 500, batch_size=333, generator=gen)
    assert not torch.equal(noisy.counts(xs, 500, batch_size=333, generator=gen), first)  # advanced state
    # The object's own generator: a fresh object with the same seed replays the same sequence.
    a, b = HiddenNoise(model, 2, 1.0, law=law, seed=4), HiddenNoise(model, 2, 1.0, law=law, seed=4)
    assert torch.equal(a.counts(xs, 500), b.counts(xs, 500))
    assert not torch.equal(a.counts(xs, 500), HiddenNoise(model, 2, 1.0, law=law, seed=4).counts(xs, 500))


class Rows(nn.Module):
    """Wraps a model and counts the rows it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.model(x)


def test_smoothed_oracle_counts_the_passes_each_vote_draws() -> None:
    n, max_queries = 7, 5
    model, w = linear_model(seed=4)
    wrapped = Rows(model)
    noisy = HiddenNoise(wrapped, 2, 0.5, law="laplace", seed=1)
    assert noisy.layer_name == "model.1"
    x = at_distances(w, [-3.0, 3.0])  # far: every micro-decision is the base label
    y = torch.tensor([0, 1])
    oracle = smoothed_oracle(noisy, n, max_queries=max_queries)
    oracle.start(x, y)
    far_side = at_distances(w, [3.0, 3.0, -3.0])
    answer = oracle.query(far_side, torch.tensor([0, 0, 1]))
    assert answer.adversarial.tolist() == [True, True, True]
    settled = n // 2 + 1  # every micro-decision agrees: the vote is settled after a majority of them
    assert oracle.queries.tolist() == [2, 1]
    assert oracle.forward_passes.tolist() == [2 * settled, settled]
    assert wrapped.rows == 3 * settled
    oracle.query(x.repeat(3, 1, 1, 1), torch.tensor([0, 1] * 3))  # image 0 is cut at its budget
    assert oracle.queries.tolist() == [max_queries, 4] and wrapped.rows == (max_queries + 4) * settled
    assert oracle.forward_passes.tolist() == [max_queries * settled, 4 * settled]


@pytest.mark.parametrize("law", LAWS)
def test_push_to_level_reaches_the_hyperplane(law: str) -> None:
    # Odd n: P[majority of n wrong] >= 1/2 iff P[micro-decision wrong] >= 1/2 iff s >= 0, the hyperplane.
    scale, n, votes, distance = 0.25, 11, 1000, 0.5
    model, w = linear_model(seed=5)
    x_o = at_distances(w, [-distance])
    x_adv = at_distances(w, [-distance + 0.1])  # along w, not yet adversarial: pushed outward
    pushed = push_to_level(HiddenNoise(model, 2, scale, law=law), x_o, x_adv, torch.tensor([0]), n=n, pa=0.5,
                           votes=votes, seed=0)
    assert pushed.confirmed.tolist() == [True]
    # Near s = 0 the level moves by about sqrt(2 n / pi) * p'(0) * s; 1000 votes resolve it to ~0.01 in l2,
    # the bisection to 1% of the distance, and the confirmation (4000 votes) asks for a level just above 1/2.
    assert pushed.l2[0] == pytest.approx(distance, abs=0.04)
    assert pushed.lower[0] >= 0.5 and pushed.p[0] <= 0.65


def problem(seed: int = 6, size: int = 100) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """The linear model and ``size`` inputs at distances spread in [-1, 1] (:func:`distances`), labelled by the
    model."""
    model, w = linear_model(seed=seed)
    xs = at_distances(w, distances(size).tolist())
    return model, xs, model(xs).argmax(1)


def distances(size: int) -> np.ndarray:
    """The signed distances of :func:`problem`'s inputs: 0.01 to 1 on either side of the hyperplane."""
    half = np.linspace(0.01, 1.0, size // 2)
    return np.concatenate([-half, half])


def vote_right(s: float, scale: float, law: str, n: int) -> float:
    """P[g_{scale,n}(x) = label] at signed distance s, ties broken at random: with p = P[micro-decision right],
    P[Bin(n, p) > n/2] + P[Bin(n, p) = n/2] / 2 (the second term for even n only)."""
    p = p_class_one(abs(s), scale, law)
    tie = scipy.stats.binom.pmf(n // 2, n, p) / 2 if n % 2 == 0 else 0.0
    return float(scipy.stats.binom.sf(n // 2, n, p) + tie)


def vote_accuracy(model: nn.Module, xs: torch.Tensor, y: torch.Tensor, scale: float, law: str, n: int,
                  seed: int, draws: int) -> float:
    """The accuracy match_accuracy evaluates (``draws`` votes per image, the images repeated draw after draw),
    computed independently."""
    gen = seeds.generator(seed, "match-accuracy")
    votes = HiddenNoise(model, 2, scale, law, seed=seed).vote(xs.repeat(draws, 1, 1, 1), n, generator=gen)
    return float((votes == y.repeat(draws)).double().mean())


@pytest.mark.parametrize("law", LAWS)
def test_match_accuracy_hits_target_and_is_monotone(law: str) -> None:
    model, xs, y = problem()
    n, seed, tolerance, draws = 11, 3, 0.0025, 4
    found = {}
    for target in (0.95, 0.8, 0.65):
        scale, acc = match_accuracy(model, 2, xs, y, target, law=law, n=n, seed=seed, draws=draws,
                                    tolerance=tolerance, low=1e-2, high=1e2, max_steps=40)
        assert abs(acc - target) <= tolerance, (target, scale, acc)
        # A deterministic function of the scale: the same seed gives the same scale and accuracy.
        assert vote_accuracy(model, xs, y, scale, law, n, seed, draws) == acc
        assert match_accuracy(model, 2, xs, y, target, law=law, n=n, seed=seed, draws=draws, tolerance=tolerance,
                              low=1e-2, high=1e2, max_steps=40) == (scale, acc)
        found[target] = scale
    assert found[0.95] < found[0.8] < found[0.65]  # more noise, less accuracy


@pytest.mark.parametrize(("law", "n"), [("gaussian", 10), ("laplace", 11)])
def test_matched_accuracy_holds_on_fresh_draws(law: str, n: int) -> None:
    # 450 images, as the adaptive-attacks chapter: at the matched scale the exact expected accuracy of the vote,
    # a(s) = mean_i P[vote right at image i], and the accuracy of 16 fresh draws from another seed are within
    # the tolerance plus 5 standard errors of the target, the standard error of 16 draws being <= 0.0025.
    size, target, draws, tolerance = 450, 0.96, 16, 0.0025
    model, xs, y = problem(size=size)
    scale, acc = match_accuracy(model, 2, xs, y, target, law=law, n=n, seed=1, low=1e-2, high=1e2)  # defaults
    assert abs(acc - target) <= tolerance
    right = np.array([vote_right(s, scale, law, n) for s in distances(size)])
    se = math.sqrt(np.sum(right * (1 - right)) / draws) / size  # of a 16-draw accuracy around a(s)
    assert se <= 0.0025, se
    assert abs(right.mean() - target) <= tolerance + Z * se, (right.mean(), target, se)
    fresh = vote_accuracy(model, xs, y, scale, law, n, seed=99, draws=draws)
    assert abs(fresh - target) <= tolerance + Z * math.sqrt(2) * se, (fresh, target, se)


def test_match_accuracy_errors() -> None:
    model, xs, y = problem(size=20)
    with pytest.raises(ValueError, match=r"target must be within .*0\.3"):  # chance is 0.5 at large scales
        match_accuracy(model, 2, xs, y, 0.3, law="gaussian", n=11, seed=0, low=1e-2, high=1e2)
    with pytest.raises(ValueError, match=r"target must be within"):  # scales too large to reach 0.99
        match_accuracy(model, 2, xs, y, 0.99, law="gaussian", n=11, seed=0, low=10.0, high=100.0)
    with pytest.raises(ValueError, match=r"^law must be one of 'gaussian', 'laplace', got 'cauchy'"):
        match_accuracy(model, 2, xs, y, 0.8, law="cauchy", n=11, seed=0)
    with pytest.raises(ValueError, match=r"^high must be a finite real number > 1"):
        match_accuracy(model, 2, xs, y, 0.8, law="gaussian", n=11, seed=0, low=1.0, high=0.5)
    with pytest.raises(ValueError, match=r"^target must be a real number in \[0, 1\]"):
        match_accuracy(model, 2, xs, y, 1.5, law="gaussian", n=11, seed=0)
    with pytest.raises(ValueError, match=r"^y must be"):
        match_accuracy(model, 2, xs, y[:3], 0.8, law="gaussian", n=11, seed=0)
    for draws in (0, 2.5):
        with pytest.raises(ValueError, match=r"^draws must be an integer >= 1, got"):
            match_accuracy(model, 2, xs, y, 0.8, law="gaussian", n=11, seed=0, draws=draws)


def test_match_accuracy_warns_when_the_accuracy_jumps() -> None:
    model, xs, y = problem(size=4)  # one draw: accuracy in steps of 1/4, 0.6 +- 0.01 is out of reach
    with pytest.warns(RuntimeWarning, match=r"no scale within tolerance"):
        scale, acc = match_accuracy(model, 2, xs, y, 0.6, law="gaussian", n=11, seed=0, draws=1, low=1e-2,
                                    high=1e2, tolerance=0.01, max_steps=12)
    assert acc in (0.5, 0.75) and vote_accuracy(model, xs, y, scale, "gaussian", 11, 0, 1) == acc


@pytest.mark.parametrize("law", LAWS)
def test_conv_model_shapes(law: str) -> None:
    model = models.architecture("mnist", torch.Generator().manual_seed(0)).eval()
    noisy = HiddenNoise(model, 10, 0.3, law=law, seed=2)
    assert noisy.layer_name == "1" and isinstance(noisy._layer, nn.Conv2d)
    xs = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    counts = noisy.counts(xs, 5, batch_size=4)
    assert counts.shape == (2, 10) and counts.sum(1).tolist() == [5, 5]
    assert noisy.vote(xs, 3).shape == (2,)
    before, after = [], []
    hooks = [model[1].register_forward_hook(lambda module, inputs, output: before.append(output.clone())),
             model[2].register_forward_hook(lambda module, inputs, output: after.append(output.clone()))]
    try:
        noisy.counts(xs[:1], 2)
    finally:
        for handle in hooks:
            handle.remove()
    # The conv's own output (seen by a hook that runs before the noise's) is the same for both noiseless copies;
    # after the ReLU, which follows the noise, the copies differ.
    assert before[0].shape == after[0].shape == (2, 32, 28, 28)
    assert torch.equal(before[0][0], before[0][1]) and not torch.equal(after[0][0], after[0][1])
    assert not model[1]._forward_hooks


def test_certify_raises_and_predict_works() -> None:
    model, w = linear_model(seed=7)
    noisy = HiddenNoise(model, 2, 0.5)
    x = at_distances(w, [2.0])
    with pytest.raises(ValueError, match=r"HiddenNoise.certify is not available: no certificate"):
        noisy.certify(x[0], 10, 100, 0.001)
    with pytest.raises(ValueError, match=r"HiddenNoise.certify_batch is not available"):
        noisy.certify_batch(x, 10, 100, 0.001)
    assert noisy.predict(x[0], 100, 0.001) == 1
    assert noisy.sigma == noisy.scale == 0.5


def test_repr_and_bad_input() -> None:
    model, _ = linear_model()
    assert repr(HiddenNoise(model, 2, 0.5, law="laplace", seed=3)) == (
        "HiddenNoise(num_classes=2, law='laplace', scale=0.5, seed=3, layer='1')")
    with pytest.raises(ValueError, match=r"^law must be one of 'gaussian', 'laplace', got 'uniform'"):
        HiddenNoise(model, 2, 0.5, law="uniform")
    for scale in (0.0, -1.0):
        with pytest.raises(ValueError, match=r"^scale must be a finite real number > 0, got"):
            HiddenNoise(model, 2, scale)
    with pytest.raises(ValueError, match=r"^base_classifier must be a torch.nn.Module with an nn.Linear or nn.Conv2d"):
        HiddenNoise(nn.Sequential(nn.Flatten(), nn.ReLU()), 2, 0.5)
    with pytest.raises(ValueError, match=r"^base_classifier must be .*got function"):
        HiddenNoise(lambda x: x, 2, 0.5)


class Skips(nn.Module):
    """Holds a Linear it never calls: no noise could be added."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Linear(64, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 2)


def test_unused_first_layer_is_an_error() -> None:
    noisy = HiddenNoise(Skips(), 2, 0.5)
    with pytest.raises(ValueError, match=r"must call its first affine layer 'unused'"):
        noisy.counts(torch.rand(1, 1, 8, 8), 3)
    assert not noisy._layer._forward_hooks


@pytest.mark.parametrize("law, reference", [("gaussian", "norm"), ("laplace", "laplace")])
def test_noise_has_its_law_and_standard_deviation(law: str, reference: str) -> None:
    """The drawn noise against scipy's own distribution (Kolmogorov-Smirnov), standard deviation ``scale``."""
    model, _ = linear_model(seed=1)
    scale = 0.7
    noisy = HiddenNoise(model, 2, scale, law=law)
    draws = torch.empty(200_000)
    noisy.fill_noise(draws, torch.Generator().manual_seed(3))
    draws = draws.double().numpy()
    frozen = scipy.stats.norm(scale=scale) if reference == "norm" else scipy.stats.laplace(scale=scale / np.sqrt(2))
    assert scipy.stats.kstest(draws, frozen.cdf).pvalue > 0.001
    assert np.isfinite(draws).all() and abs(draws.std() - scale) < 0.01


@pytest.mark.parametrize("law", LAWS)
@pytest.mark.parametrize("n, pa", [(1, None), (10, None), (11, 0.8)])
def test_curtailed_hidden_noise_votes_have_the_binomial_law(law: str, n: int, pa: float | None) -> None:
    # Each micro-decision at signed distance s is class 1 w.p. p_class_one; the vote for label 0 is wrong w.p.
    # P[Bin(n, p) > n/2] + P[Bin(n, p) = n/2] / 2 (majority) or P[Bin(n, p) >= ceil(n P_a)], curtailed or not.
    rows, scale, s = 3000, 0.5, 0.05
    model, w = linear_model(seed=2)
    noisy = HiddenNoise(model, 2, scale, law=law)
    p = p_class_one(s, scale, law)
    needed = None if pa is None else int(theory.votes_needed(n, pa))
    wrong, passes = noisy.decide(at_distances(w, [s] * rows), torch.zeros(rows, dtype=torch.long), n,
                                 ImageStreams(5, range(rows), "cpu", limit=10_000), needed=needed)
    if needed is None:
        exact = scipy.stats.binom.sf(n // 2, n, p) + (scipy.stats.binom.pmf(n // 2, n, p) / 2 if n % 2 == 0 else 0)
    else:
        exact = scipy.stats.binom.sf(needed - 1, n, p)
    rate = wrong.double().mean().item()
    assert abs(rate - exact) <= Z * math.sqrt(exact * (1 - exact) / rows), (law, n, rate, exact)
    assert (passes <= n).all() and (passes >= 1).all()


def test_curtailed_votes_add_the_noise_to_a_convolution_output() -> None:
    model = models.architecture("mnist", torch.Generator().manual_seed(0)).eval()
    noisy = HiddenNoise(model, 10, 0.3, seed=2)
    xs = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert noisy.noise_size(xs) == 32 * 28 * 28
    wrong, passes = noisy.decide(xs, torch.zeros(3, dtype=torch.long), 4, SharedNoise(torch.Generator()))
    assert wrong.shape == (3,) and ((passes >= 3) & (passes <= 4)).all()
