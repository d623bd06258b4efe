"""Property tests of rs_repro.smoothing with known answers (Cohen et al. 2019; ICASSP 2022 eq. (1)-(2)).

The reference is a linear binary classifier f(x) = [w.x + b > 0] with ||w|| = 1: the probability that a
noisy copy keeps the label of x is exactly pA = Phi(|dist| / sigma), dist being the signed l2 distance
to the hyperplane, and g_sigma = f (ICASSP 2022, section 3.1). Statistical checks use fixed seeds and
error bars of 4.5 binomial standard errors, so they are deterministic and would fail by chance with
probability < 1e-5 for an unlucky seed.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from rs_repro import models, smoothing
from rs_repro.noise import SharedNoise
from rs_repro.smoothing import ABSTAIN, CPU_FORWARD_ROWS, AlwaysAbstainWarning, Smooth, top_class

SHAPE = (1, 8, 8)  # d = 64
Z = 4.5  # width of the statistical error bars, in standard errors


class LinearBinary(nn.Module):
    """f(x) = 0 if w.x + b > 0 else 1, with logits (s, -s), s = w.x + b, ||w||_2 = 1."""

    def __init__(self, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> None:
        super().__init__()
        self.shape = shape
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(math.prod(shape), generator=g, dtype=torch.float64)
        self.w = (w / w.norm()).float()
        self.x0 = torch.rand(self.w.shape, generator=g).float() * 0.5 + 0.25  # a point of the hyperplane
        self.b = -float(self.w @ self.x0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x.flatten(1) * self.w).sum(1) + self.b  # elementwise: no thread-pool barrier per call
        return torch.stack((s, -s), dim=1)

    def at_distance(self, dist: float) -> torch.Tensor:
        """The point at signed distance ``dist`` from the hyperplane (positive side = class 0)."""
        return (self.x0 + dist * self.w).view(self.shape)


class Constant(nn.Module):
    """Always answers ``label``."""

    def __init__(self, num_classes: int, label: int) -> None:
        super().__init__()
        self.num_classes, self.label = num_classes, label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], self.num_classes)
        logits[:, self.label] = 1.0
        return logits


class Recorder(nn.Module):
    """Wraps a model and records the size of every batch it receives."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return self.model(x)


class Alternating(nn.Module):
    """Row r of each batch gets ``labels[r % len(labels)]``, whatever the input: ties by construction."""

    def __init__(self, num_classes: int, labels: list[int]) -> None:
        super().__init__()
        self.num_classes, self.labels = num_classes, torch.tensor(labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(x.shape[0])
        logits = torch.zeros(x.shape[0], self.num_classes)
        logits[rows, self.labels[rows % len(self.labels)]] = 1.0
        return logits


class ImageIndex(nn.Module):
    """Reads the image index k encoded as the constant pixel value k / 10 (robust to tiny noise)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.round(x.flatten(1).mean(1) * 10).long()
        return nn.functional.one_hot(k, self.num_classes).float()


def phi(z: float) -> float:
    return float(scipy.stats.norm.cdf(z))


# --------------------------------------------------------------------------------------------------
# Linear classifier: exact pA, certified radius, g_sigma = f
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.12, 0.5])
def test_linear_counts_match_phi(sigma: float) -> None:
    model = LinearBinary(seed=1)
    dists = [-1.5 * sigma, -0.3 * sigma, 0.0, 0.4 * sigma, 1.0 * sigma, 2.5 * sigma]
    xs = torch.stack([model.at_distance(t) for t in dists])
    n = 20_000
    counts = Smooth(model, 2, sigma, seed=11).counts(xs, n, batch_size=4096)
    assert counts.shape == (len(dists), 2) and counts.dtype == torch.int64
    assert torch.equal(counts.sum(1), torch.full((len(dists),), n))
    for (c0, _), t in zip(counts.tolist(), dists):
        p = phi(t / sigma)
        se = math.sqrt(p * (1 - p) / n)
        assert abs(c0 / n - p) <= Z * se, (t, c0 / n, p)


def _radius_bounds(p: float, n: int, alpha: float, sigma: float) -> tuple[float, float]:
    """Range of sigma * Phi^-1(CP lower bound) when nA is within Z standard errors of n p."""
    se = math.sqrt(n * p * (1 - p))
    lo, hi = math.floor(n * p - Z * se), min(math.ceil(n * p + Z * se), n)
    return tuple(sigma * scipy.stats.norm.ppf(scipy.stats.beta.ppf(alpha, k, n - k + 1)) for k in (lo, hi))


@pytest.mark.parametrize("side", [1, -1])
def test_linear_certify_radius(side: int) -> None:
    sigma, n, alpha = 0.25, 10_000, 0.001
    dist = 2.0 * sigma
    model = LinearBinary(seed=2)
    smooth = Smooth(model, 2, sigma, seed=5)
    label, radius = smooth.certify(model.at_distance(side * dist), n0=100, n=n, alpha=alpha, batch_size=5000)
    assert label == (0 if side > 0 else 1)
    assert 0.0 < radius <= dist  # a lower bound on the distance to the boundary of g_sigma = f
    lo, hi = _radius_bounds(phi(dist / sigma), n, alpha, sigma)
    assert lo <= radius <= hi, (lo, radius, hi)


def test_linear_certify_batch_radius_and_abstention() -> None:
    sigma, n, alpha = 0.25, 10_000, 0.001
    model = LinearBinary(seed=3)
    dists = [2.0 * sigma, -2.0 * sigma, 0.0, 1.0 * sigma]
    xs = torch.stack([model.at_distance(t) for t in dists])
    labels, radii = Smooth(model, 2, sigma, seed=8).certify_batch(xs, 100, n, alpha, batch_size=3000)
    assert labels.dtype == torch.int64 and radii.dtype == torch.float64
    assert labels.shape == radii.shape == (4,)
    assert labels.tolist() == [0, 1, ABSTAIN, 0]
    assert radii[2] == 0.0  # on the boundary pA = 1/2: abstains with probability >= 1 - alpha
    for i in (0, 1, 3):
        assert 0 < radii[i] <= abs(dists[i])
        lo, hi = _radius_bounds(phi(abs(dists[i]) / sigma), n, alpha, sigma)
        assert lo <= radii[i] <= hi


def test_linear_vote_is_base_label() -> None:
    sigma = 0.25
    model = LinearBinary(seed=4)
    dists = [4 * sigma, -4 * sigma, 0.5 * sigma, -0.5 * sigma]
    xs = torch.stack([model.at_distance(t) for t in dists])
    smooth = Smooth(model, 2, sigma, seed=0)
    assert smooth.vote(xs[:2], n=100).tolist() == [0, 1]  # far: every draw agrees
    # g_sigma = f for a linear f: with n = 2001, pA = Phi(0.5) = 0.69 wins the majority w.p. ~1 - 1e-65
    assert smooth.vote(xs, n=2001, batch_size=1000).tolist() == model(xs).argmax(1).tolist()


# --------------------------------------------------------------------------------------------------
# PREDICT
# --------------------------------------------------------------------------------------------------


def test_predict_always_abstains_and_warns_at_n10_alpha0001() -> None:
    smooth = Smooth(Constant(5, 2), 5, 0.25)
    x = torch.full(SHAPE, 0.5)
    with pytest.warns(AlwaysAbstainWarning, match=r"n=10 and alpha=0.001"):
        assert smooth.predict(x, n=10, alpha=0.001) == ABSTAIN
    # 2**(1-10) = 0.00195 <= 0.002: may answer, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert smooth.predict(x, n=10, alpha=0.002) == 2


def test_predict_constant_classifier_n100() -> None:
    smooth = Smooth(Constant(5, 3), 5, 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert smooth.predict(torch.full(SHAPE, 0.5), n=100, alpha=0.001) == 3


def test_predict_abstains_on_tie_and_on_linear_boundary() -> None:
    tie = Smooth(Alternating(4, [1, 2]), 4, 0.1)
    assert tie.predict(torch.zeros(SHAPE), n=100, alpha=0.05) == ABSTAIN  # 50 vs 50: p-value 1
    model = LinearBinary(seed=6)
    smooth = Smooth(model, 2, 0.25, seed=2)
    assert smooth.predict(model.at_distance(0.0), n=1000, alpha=0.001) == ABSTAIN
    assert smooth.predict(model.at_distance(-0.25), n=1000, alpha=0.001) == 1  # pA = Phi(1) = 0.84


# --------------------------------------------------------------------------------------------------
# Randomness
# --------------------------------------------------------------------------------------------------


def _near_boundary_batch(model: LinearBinary) -> torch.Tensor:
    return torch.stack([model.at_distance(t) for t in np.linspace(-0.1, 0.1, 8)])


def test_same_seed_same_counts() -> None:
    model = LinearBinary(seed=7)
    xs = _near_boundary_batch(model)
    a = Smooth(model, 2, 0.3, seed=123).counts(xs, 500, batch_size=300)
    b = Smooth(model, 2, 0.3, seed=123).counts(xs, 500, batch_size=300)
    assert torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(99), torch.Generator().manual_seed(99)
    c = Smooth(model, 2, 0.3, seed=1).counts(xs, 500, batch_size=300, generator=g1)
    d = Smooth(model, 2, 0.3, seed=2).counts(xs, 500, batch_size=300, generator=g2)
    assert torch.equal(c, d)
    # a Smooth with seed s and a user generator seeded with s draw the same noise
    e = Smooth(model, 2, 0.3, seed=7).counts(xs, 500, batch_size=300, generator=torch.Generator().manual_seed(123))
    assert torch.equal(a, e)


def test_different_seeds_and_repeated_calls_differ() -> None:
    model = LinearBinary(seed=7)
    xs = _near_boundary_batch(model)
    smooth = Smooth(model, 2, 0.3, seed=1)
    first = smooth.counts(xs, 500)
    second = smooth.counts(xs, 500)  # the object's generator advances
    other = Smooth(model, 2, 0.3, seed=2).counts(xs, 500)
    assert not torch.equal(first, second)
    assert not torch.equal(first, other)
    # the first call of a fresh object with the same seed replays the first call, then the second
    replay = Smooth(model, 2, 0.3, seed=1)
    assert torch.equal(replay.counts(xs, 500), first)
    assert torch.equal(replay.counts(xs, 500), second)


def test_user_generator_advances_and_leaves_own_generator_alone() -> None:
    model = LinearBinary(seed=7)
    xs = _near_boundary_batch(model)
    g = torch.Generator().manual_seed(5)
    smooth = Smooth(model, 2, 0.3, seed=1)
    a = smooth.counts(xs, 500, generator=g)
    b = smooth.counts(xs, 500, generator=g)
    assert not torch.equal(a, b)
    assert torch.equal(smooth.counts(xs, 500), Smooth(model, 2, 0.3, seed=1).counts(xs, 500))


# --------------------------------------------------------------------------------------------------
# Chunking, memory bound, attribution of votes to images
# --------------------------------------------------------------------------------------------------


def test_memory_bounded_at_large_n() -> None:
    model = Recorder(LinearBinary(seed=0, shape=(1, 2, 2)))  # a tiny input: 4000 cheap chunks
    xs = torch.stack([model.model.at_distance(0.05), model.model.at_distance(-0.05)])
    n, batch_size = 2_000_000, 1000
    counts = Smooth(model, 2, 0.25, seed=0).counts(xs, n, batch_size=batch_size)
    assert max(model.sizes) <= min(batch_size, CPU_FORWARD_ROWS + 1)  # each chunk in CPU-sized slices
    slices = math.ceil(batch_size / CPU_FORWARD_ROWS)
    assert sum(model.sizes) == 2 * n and len(model.sizes) == math.ceil(2 * n / batch_size) * slices
    assert counts.sum(1).tolist() == [n, n]
    p = phi(0.05 / 0.25)
    se = math.sqrt(p * (1 - p) / n)
    assert abs(counts[0, 0].item() / n - p) <= Z * se
    assert abs(counts[1, 1].item() / n - p) <= Z * se


@pytest.mark.parametrize(("m", "slices"), [(1, [1]), (2, [2]), (CPU_FORWARD_ROWS + 1, [CPU_FORWARD_ROWS + 1]),
                                           (CPU_FORWARD_ROWS + 2, [CPU_FORWARD_ROWS, 2]),
                                           (2 * CPU_FORWARD_ROWS + 1, [CPU_FORWARD_ROWS, CPU_FORWARD_ROWS + 1])])
def test_top_classes_slices_a_cpu_batch_and_never_leaves_one_row_alone(m: int, slices: list[int]) -> None:
    model = Recorder(ImageIndex(3))
    xs = torch.full((m, *SHAPE), 0.2)  # image index 2 of ImageIndex(3)
    assert Smooth(model, 3, 0.1).top_classes(xs).tolist() == [2] * m
    assert model.sizes == slices


def test_counts_and_decisions_do_not_depend_on_the_cpu_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The digits MLP's micro-decisions in slices of CPU_FORWARD_ROWS equal those of one forward pass per chunk:
    the same counts, bit for bit, and the same curtailed decisions."""
    model = models.architecture("digits", torch.Generator().manual_seed(0)).eval()
    xs = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ys = torch.arange(5)

    def run() -> tuple[torch.Tensor, ...]:
        smooth = Smooth(model, 10, 0.5)
        counts = smooth.counts(xs, 3000, batch_size=10_000, generator=torch.Generator().manual_seed(2))
        noise = SharedNoise(torch.Generator().manual_seed(3))
        wrong, passes = smooth.decide(xs.repeat(40, 1, 1, 1), ys.repeat(40), 100, noise, batch_size=10_000)
        return counts, wrong, torch.from_numpy(passes)

    sliced = run()
    monkeypatch.setattr(smoothing, "CPU_FORWARD_ROWS", 1 << 30)
    whole = run()
    assert all(torch.equal(a, b) for a, b in zip(sliced, whole, strict=True))


@pytest.mark.parametrize(("num_images", "n", "batch_size"), [(6, 7, 5), (6, 3, 10), (5, 1, 2), (4, 9, 1000), (9, 3, 6), (5, 4, 10),
                                                              (7, 4, 4), (3, 10, 7)])
def test_chunks_spanning_images_attribute_votes_to_the_right_image(num_images: int, n: int,
                                                                   batch_size: int) -> None:
    model = Recorder(ImageIndex(num_images))
    xs = (torch.arange(num_images, dtype=torch.float32) / 10).view(-1, 1, 1, 1).expand(-1, *SHAPE).clone()
    counts = Smooth(model, num_images, 1e-6).counts(xs, n, batch_size=batch_size)
    assert torch.equal(counts, n * torch.eye(num_images, dtype=torch.int64))
    assert max(model.sizes) <= batch_size
    assert len(model.sizes) == math.ceil(num_images * n / batch_size)  # chunks span images


def test_noisy_inputs_are_not_clipped() -> None:
    class Negative(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            neg = (x.flatten(1).min(1).values < 0).float()
            return torch.stack((1 - neg, neg), dim=1)

    counts = Smooth(Negative(), 2, 1.0).counts(torch.zeros(1, *SHAPE), 200)
    assert counts.tolist() == [[0, 200]]


def test_model_mode_and_input_untouched() -> None:
    model = LinearBinary(seed=0).train()
    xs = _near_boundary_batch(model).requires_grad_(True)
    before = xs.detach().clone()
    Smooth(model, 2, 0.3).counts(xs, 50)
    assert model.training  # eval mode is the caller's business
    assert torch.equal(xs.detach(), before)


# --------------------------------------------------------------------------------------------------
# Tie rule
# --------------------------------------------------------------------------------------------------


def _uniform_within(labels: torch.Tensor, tied: list[int]) -> None:
    """Assert that ``labels`` [m] take only the values ``tied``, each with frequency 1 / len(tied) +- Z s.e."""
    assert set(labels.unique().tolist()) == set(tied)
    p = 1 / len(tied)
    for label in tied:
        rate = (labels == label).double().mean().item()
        assert abs(rate - p) <= Z * math.sqrt(p * (1 - p) / len(labels)), (label, rate, p)


@pytest.mark.parametrize("labels", [[3, 7], [7, 3], [6, 2, 4], [4, 6, 2]])
def test_vote_tie_splits_uniformly(labels: list[int]) -> None:
    k, images = len(labels), 6000
    n = 12 * k  # a multiple of k: each image gets n / k votes for each label
    model = Alternating(10, labels)
    smooth = Smooth(model, 10, 0.1, seed=3)
    xs = torch.zeros(images, *SHAPE)
    counts = smooth.counts(xs, n, batch_size=6 * k)  # chunk starts keep the row parity
    expected = torch.zeros(images, 10, dtype=torch.int64)
    expected[:, labels] = n // k
    assert torch.equal(counts, expected)
    _uniform_within(smooth.vote(xs, n, batch_size=6 * k), sorted(labels))  # whatever the order of the labels


def test_top_class_known_answers() -> None:
    counts = torch.tensor([[0, 3, 1], [2, 0, 2], [5, 5, 5], [0, 0, 9], [4, 4, 0]])
    votes = top_class(counts.repeat(20_000, 1), torch.Generator().manual_seed(0)).view(20_000, 5)
    assert votes.dtype == torch.int64
    assert (votes[:, 0] == 1).all() and (votes[:, 3] == 2).all()  # a unique maximum wins
    _uniform_within(votes[:, 1], [0, 2])
    _uniform_within(votes[:, 2], [0, 1, 2])  # a three-class tie splits in thirds
    _uniform_within(votes[:, 4], [0, 1])
    assert (votes[:, 1] != votes[:, 2]).any()  # rows draw independently


def test_top_class_draws_one_number_per_row_whatever_the_counts() -> None:
    gens = [torch.Generator().manual_seed(4) for _ in range(3)]
    top_class(torch.tensor([[3, 0], [0, 3], [1, 2]]), gens[0])  # no tie
    top_class(torch.tensor([[2, 2, 2], [3, 3, 0], [1, 1, 4]]), gens[1])  # ties
    torch.rand(3, generator=gens[2], dtype=torch.float64)
    assert torch.equal(gens[0].get_state(), gens[1].get_state())
    assert torch.equal(gens[1].get_state(), gens[2].get_state())


def test_vote_is_top_class_of_counts_and_is_reproducible() -> None:
    model = LinearBinary(seed=7)
    xs = torch.stack([model.at_distance(0.0)] * 400)  # on the boundary: n = 10 ties w.p. 0.25
    smooth = Smooth(model, 2, 0.3, seed=5)
    votes = smooth.vote(xs, 10, batch_size=300)
    assert torch.equal(votes, Smooth(model, 2, 0.3, seed=5).vote(xs, 10, batch_size=300))  # same seed
    assert not torch.equal(votes, smooth.vote(xs, 10, batch_size=300))  # the object's generator advances
    gen = torch.Generator().manual_seed(5)  # the noise, then one tie-breaking number per input, from one stream
    counts = smooth.counts(xs, 10, batch_size=300, generator=gen)
    assert torch.equal(votes, top_class(counts, gen))
    ties = counts[:, 0] == counts[:, 1]
    assert 0.15 < ties.double().mean() < 0.35 and (votes[ties] == 0).any() and (votes[ties] == 1).any()


class Swapped(nn.Module):
    """``model`` with the order of its two classes swapped (logits (b, a) for (a, b))."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).flip(1)


@pytest.mark.parametrize("n", [10, 4, 7])
def test_vote_law_on_a_linear_model_does_not_depend_on_the_class_order(n: int) -> None:
    # On the side of class 0 at distance dist, a micro-decision is wrong w.p. p = Phi(-dist / sigma), and
    # P[g_{sigma,n} wrong] = P[Bin(n, p) > n / 2] + P[Bin(n, p) = n / 2] / 2 (0 for odd n): a tie is a coin flip.
    # The first-maximum rule gave P[Bin > n/2] with the classes in one order and P[Bin >= n/2] in the other.
    sigma, dist, votes = 0.25, 0.06, 20_000
    base = LinearBinary(seed=12)
    xs = base.at_distance(dist).expand(votes, *SHAPE)
    p = phi(-dist / sigma)  # 0.405
    exact = scipy.stats.binom.sf(n // 2, n, p) + (scipy.stats.binom.pmf(n // 2, n, p) / 2 if n % 2 == 0 else 0)
    se = math.sqrt(exact * (1 - exact) / votes)
    for model, label in ((base, 0), (Swapped(base), 1)):
        wrong = (Smooth(model, 2, sigma, seed=n).vote(xs, n, batch_size=10_000) != label).double().mean().item()
        assert abs(wrong - exact) <= Z * se, (n, label, wrong, exact)


class TieThenConstant(nn.Module):
    """First call: a tie between ``labels`` (as Alternating); later calls: always ``min(labels)``."""

    def __init__(self, num_classes: int, labels: list[int]) -> None:
        super().__init__()
        self.tie, self.calls = Alternating(num_classes, labels), 0
        self.constant = Constant(num_classes, min(labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.tie(x) if self.calls == 1 else self.constant(x)


@pytest.mark.parametrize("labels", [[3, 7], [7, 3]])
def test_certify_selection_tie_goes_to_smallest_class(labels: list[int]) -> None:
    # the n0 selection draws tie; picking the larger class would give nA = 0 and abstain
    smooth = Smooth(TieThenConstant(10, labels), 10, 0.1)
    label, radius = smooth.certify(torch.zeros(SHAPE), n0=100, n=1000, alpha=0.001, batch_size=1000)
    assert label == 3 and radius > 0


# --------------------------------------------------------------------------------------------------
# CERTIFY: exact answers for a constant classifier, certify_batch == certify
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("sigma", "n", "alpha"), [(0.25, 1000, 0.001), (0.5, 100, 0.01), (0.12, 10_000, 0.001)])
def test_constant_classifier_certifies_best_case_radius(sigma: float, n: int, alpha: float) -> None:
    smooth = Smooth(Constant(4, 1), 4, sigma)
    expected = sigma * scipy.stats.norm.ppf(alpha ** (1 / n))
    label, radius = smooth.certify(torch.full(SHAPE, 0.5), n0=10, n=n, alpha=alpha, batch_size=4096)
    assert label == 1 and radius == pytest.approx(expected, rel=1e-12)
    labels, radii = smooth.certify_batch(torch.rand(3, *SHAPE), n0=10, n=n, alpha=alpha, batch_size=4096)
    assert labels.tolist() == [1, 1, 1]
    assert torch.allclose(radii, torch.full((3,), expected, dtype=torch.float64), rtol=1e-12, atol=0)


def test_certify_abstains_when_lower_bound_below_half() -> None:
    # n = 1: the lower bound of 1 success out of 1 is alpha < 1/2: abstain whatever the model
    label, radius = Smooth(Constant(3, 0), 3, 0.25).certify(torch.zeros(SHAPE), n0=1, n=1, alpha=0.001)
    assert (label, radius) == (ABSTAIN, 0.0)


def test_certify_batch_matches_certify_with_same_generator() -> None:
    # one image: certify_batch and certify consume the same stream, so they agree exactly
    model = LinearBinary(seed=9)
    x = model.at_distance(0.3)
    smooth = Smooth(model, 2, 0.25)
    single = smooth.certify(x, 100, 5000, 0.001, batch_size=1000, generator=torch.Generator().manual_seed(4))
    labels, radii = smooth.certify_batch(x[None], 100, 5000, 0.001, batch_size=1000,
                                         generator=torch.Generator().manual_seed(4))
    assert single == (int(labels[0]), float(radii[0]))


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


def test_constructor_validation() -> None:
    model = Constant(3, 0)
    for sigma in (0, -0.1, float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(ValueError, match=r"sigma must be a finite real number > 0"):
            Smooth(model, 3, sigma)
    for k in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match=r"num_classes must be an integer >= 2"):
            Smooth(model, k, 0.25)
    with pytest.raises(ValueError, match=r"seed must be an integer"):
        Smooth(model, 3, 0.25, seed=1.5)
    with pytest.raises(TypeError, match=r"base_classifier must be a callable"):
        Smooth("model", 3, 0.25)


def test_method_validation() -> None:
    smooth = Smooth(Constant(3, 0), 3, 0.25)
    x, xs = torch.zeros(SHAPE), torch.zeros(2, *SHAPE)
    for bad_n in (0, -3, 1.5, True, "10"):
        with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got"):
            smooth.counts(xs, bad_n)
        with pytest.raises(ValueError, match=r"^n must be an integer >= 1"):
            smooth.predict(x, bad_n, 0.01)
        with pytest.raises(ValueError, match=r"^n must be an integer >= 1"):
            smooth.certify(x, 10, bad_n, 0.01)
        with pytest.raises(ValueError, match=r"^n0 must be an integer >= 1"):
            smooth.certify(x, bad_n, 10, 0.01)
    with pytest.raises(ValueError, match=r"^n0 must be an integer >= 1, got 0"):
        smooth.certify_batch(xs, 0, 10, 0.01)
    for bad_batch in (0, 2.0):
        with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1"):
            smooth.vote(xs, 10, batch_size=bad_batch)
    for alpha in (0, 1, 1.5, -0.1, float("nan"), None):
        with pytest.raises(ValueError, match=r"alpha must be a real number in the open interval \(0, 1\)"):
            smooth.predict(x, 100, alpha)
        with pytest.raises(ValueError, match=r"alpha must be a real number in the open interval \(0, 1\)"):
            smooth.certify_batch(xs, 10, 100, alpha)
    with pytest.raises(ValueError, match=r"x must be a 3-D tensor of shape \[C, H, W\], got shape \(2, 1, 8, 8\)"):
        smooth.predict(xs, 100, 0.01)
    with pytest.raises(ValueError, match=r"x must be a 3-D tensor"):
        smooth.certify(xs, 10, 100, 0.01)
    for method in (smooth.counts, smooth.vote):
        with pytest.raises(ValueError, match=r"xs must be a 4-D tensor of shape \[B, C, H, W\], got shape \(1, 8, 8\)"):
            method(x, 10)
    with pytest.raises(ValueError, match=r"xs must be a 4-D tensor"):
        smooth.certify_batch(x, 10, 100, 0.01)
    with pytest.raises(TypeError, match=r"xs must be a torch.Tensor"):
        smooth.counts(np.zeros((2, 1, 8, 8)), 10)
    with pytest.raises(ValueError, match=r"xs must have a floating-point dtype .* got torch.int64"):
        smooth.counts(torch.zeros(2, *SHAPE, dtype=torch.int64), 10)
    with pytest.raises(ValueError, match=r"x must have a floating-point dtype"):
        smooth.predict(torch.zeros(SHAPE, dtype=torch.uint8), 100, 0.01)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"xs must contain only finite values"):
            smooth.counts(torch.full((2, *SHAPE), bad), 10)
        with pytest.raises(ValueError, match=r"x must contain only finite values"):
            smooth.certify(torch.full(SHAPE, bad), 10, 100, 0.01)
    with pytest.raises(ValueError, match=r"xs must be non-empty"):
        smooth.counts(torch.zeros(0, *SHAPE), 10)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None"):
        smooth.counts(xs, 10, generator=np.random.default_rng(0))


def test_top_class_validation() -> None:
    gen = torch.Generator()
    for bad in (torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), torch.zeros(3, 0, dtype=torch.int64),
                torch.zeros(3, 2, dtype=torch.bool)):
        with pytest.raises(ValueError, match=r"^counts must be an integer tensor of shape \[B, K\] with K >= 1"):
            top_class(bad, gen)
    with pytest.raises(TypeError, match=r"^counts must be a torch.Tensor"):
        top_class([[1, 2]], gen)
    with pytest.raises(TypeError, match=r"^generator must be a torch.Generator, got int"):
        top_class(torch.ones(2, 2, dtype=torch.int64), 0)


def test_bad_logits_shape() -> None:
    with pytest.raises(ValueError, match=r"base_classifier must return logits of shape \[m, num_classes\] = \[8, 5\]"):
        Smooth(Constant(3, 0), 5, 0.25).counts(torch.zeros(2, *SHAPE), 4)


def test_smoothing_imports_no_attack() -> None:
    """The smoothed classifier stands alone: the attacks build on it, never the other way round."""
    code = ("import sys, rs_repro.smoothing; "
            "print([m for m in sys.modules if m.startswith('rs_repro.attacks')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generator_on_other_device() -> None:
    smooth = Smooth(Constant(3, 0), 3, 0.25)
    with pytest.raises(ValueError, match=r"generator must be on the device of the inputs \(cpu\)"):
        smooth.counts(torch.zeros(2, *SHAPE), 10, generator=torch.Generator(device="cuda"))
    with pytest.raises(ValueError, match=r"generator must be on the device of the inputs \(cuda"):
        smooth.vote(torch.zeros(2, *SHAPE, device="cuda"), 10, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"^generator must be a torch.Generator on the device of counts \(cuda"):
        top_class(torch.ones(2, 2, dtype=torch.int64, device="cuda"), torch.Generator())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tie_splits_uniformly_and_reproducibly() -> None:
    counts = torch.tensor([[2, 2, 0, 2]], device="cuda").expand(30_000, 4)
    votes = top_class(counts, torch.Generator(device="cuda").manual_seed(1))
    assert votes.device == counts.device
    assert torch.equal(votes, top_class(counts, torch.Generator(device="cuda").manual_seed(1)))
    _uniform_within(votes.cpu(), [0, 1, 3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_counts_match_distribution_and_seed() -> None:
    model = LinearBinary(seed=1)
    model.w, model.x0 = model.w.cuda(), model.x0.cuda()
    xs = torch.stack([model.at_distance(t) for t in (0.1, -0.2)])
    a = Smooth(model, 2, 0.25, seed=3).counts(xs, 20_000, batch_size=7000)
    b = Smooth(model, 2, 0.25, seed=3).counts(xs, 20_000, batch_size=7000)
    assert a.device == xs.device and torch.equal(a, b)
    for row, t in zip(a.tolist(), (0.1, -0.2)):
        p = phi(t / 0.25)
        assert abs(row[0] / 20_000 - p) <= Z * math.sqrt(p * (1 - p) / 20_000)
