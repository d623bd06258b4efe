"""Known-answer tests for rs_repro.theory (equations (2)-(6) of Maho, Furon, Le Merrer, ICASSP 2022)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from rs_repro import theory as th

D_IMAGENET = 3 * 224 * 224


# --------------------------------------------------------------------------------------------------
# eq. (2) and Cohen et al.
# --------------------------------------------------------------------------------------------------
def test_certified_radius_values():
    assert th.certified_radius(stats.norm.cdf(1.0), 0.25) == pytest.approx(0.25, rel=1e-12)
    assert th.certified_radius(stats.norm.cdf(2.5), 0.5) == pytest.approx(1.25, rel=1e-12)
    assert th.certified_radius(0.5, 0.25) == 0.0  # no certificate at p = 1/2
    assert th.certified_radius(0.2, 0.25) == 0.0  # abstain, not a negative radius
    assert th.certified_radius(0.0, 0.25) == 0.0
    assert th.certified_radius(1.0, 0.25) == math.inf
    out = th.certified_radius([0.1, 0.5, stats.norm.cdf(1.0), 1.0], [1.0, 1.0, 2.0, 1.0])
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [0.0, 0.0, 2.0, np.inf], rtol=1e-12)
    assert isinstance(th.certified_radius(0.9, 0.1), float)


def test_cohen_radius_reduces_to_eq2_and_zero_when_not_ahead():
    pa = np.array([0.51, 0.7, 0.9, 0.999])
    np.testing.assert_allclose(th.cohen_radius(pa, 1 - pa, 0.3), th.certified_radius(pa, 0.3), rtol=1e-10)
    # closed form with p_B < 1 - p_A
    assert th.cohen_radius(0.6, 0.1, 0.5) == pytest.approx(
        0.25 * (stats.norm.ppf(0.6) - stats.norm.ppf(0.1)), rel=1e-12
    )
    assert th.cohen_radius(0.3, 0.3, 1.0) == 0.0
    assert th.cohen_radius(0.2, 0.4, 1.0) == 0.0
    assert th.cohen_radius(1.0, 0.0, 1.0) == math.inf
    # tiny floating excess over 1 is tolerated
    assert th.cohen_radius(0.7, 0.3 + 1e-12, 1.0) == pytest.approx(th.certified_radius(0.7, 1.0), rel=1e-9)


@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.3])
def test_clopper_pearson_matches_scipy_binomtest(alpha):
    for n in (1, 2, 7, 50, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            lo, hi = th.clopper_pearson(k, n, alpha)
            ci = stats.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")
            assert lo == pytest.approx(ci.low, rel=1e-9, abs=1e-14)
            assert hi == pytest.approx(ci.high, rel=1e-9, abs=1e-14)
    assert th.clopper_pearson(0, 10, alpha)[0] == 0.0
    assert th.clopper_pearson(10, 10, alpha)[1] == 1.0


def test_clopper_pearson_one_sided_cohen_bound_is_exact_tail():
    # CERTIFY's lower bound p_ = clopper_pearson(nA, n, 2 alpha)[0] satisfies P[B(n, p_) >= nA] = alpha.
    alpha, n = 0.001, 10_000
    for n_a in (5_200, 9_000, 9_990, 10_000):
        p_low = th.clopper_pearson(n_a, n, 2 * alpha)[0]
        assert stats.binom.sf(n_a - 1, n, p_low) == pytest.approx(alpha, rel=1e-6)


def test_clopper_pearson_vectorised():
    lo, hi = th.clopper_pearson([0, 5, 10], 10, 0.05)
    assert isinstance(lo, np.ndarray) and lo.shape == (3,)
    for i, k in enumerate((0, 5, 10)):
        assert (lo[i], hi[i]) == pytest.approx(th.clopper_pearson(k, 10, 0.05), rel=1e-12)


def test_max_certified_radius():
    alpha = 0.001
    sig = np.array([0.05, 0.15, 0.25])
    # paper-notes: n = 1e4 gives 0.16, 0.48, 0.80; n = 1e5 gives 0.19, 0.57, 0.95
    np.testing.assert_array_equal(
        np.round(th.max_certified_radius(10_000, alpha, sig), 2), [0.16, 0.48, 0.80]
    )
    np.testing.assert_array_equal(np.round(th.max_certified_radius(1e5, alpha, sig), 2), [0.19, 0.57, 0.95])
    for n in (10, 100, 10_000, 100_000):
        for s in sig:
            expected = th.certified_radius(th.clopper_pearson(n, n, 2 * alpha)[0], s)
            assert th.max_certified_radius(n, alpha, s) == pytest.approx(expected, rel=1e-9)
    # too few samples to certify anything
    assert th.max_certified_radius(5, alpha, 0.25) == 0.0


# --------------------------------------------------------------------------------------------------
# eq. (3): SORM, hyperplane, sphere
# --------------------------------------------------------------------------------------------------
def test_sorm_flat_boundary_is_hyperplane():
    beta = np.array([[0.0, 0.5, 1.0], [2.0, 4.0, 8.0]])
    out = th.sorm_pi0(beta, np.zeros(D_IMAGENET - 1))
    assert out.shape == beta.shape
    np.testing.assert_allclose(out, stats.norm.sf(beta), rtol=1e-12)
    np.testing.assert_allclose(th.pi0_hyperplane(beta), stats.norm.sf(beta), rtol=1e-14)
    assert th.pi0_hyperplane(-1.0) == pytest.approx(stats.norm.cdf(1.0), rel=1e-14)
    assert th.sorm_pi0(0.7, []) == pytest.approx(stats.norm.sf(0.7), rel=1e-14)  # d = 1
    assert isinstance(th.sorm_pi0(1.0, np.zeros(3)), float)


def test_sorm_log_space_no_overflow_with_imagenet_dimension():
    # paired curvatures with (1 + beta k+)(1 - beta k-) = 1: the exact product is 1, so SORM = Phi(-beta),
    # while the running product over the first half underflows and over the second half overflows
    m, beta, k_plus = 75_263, 4.0, 0.02
    k_minus = k_plus / (1 + beta * k_plus)
    curv = np.concatenate([np.full(m, k_plus), np.full(m, -k_minus), [0.0]])
    assert curv.size == D_IMAGENET - 1
    with np.errstate(over="ignore", under="ignore"):
        assert np.prod((1 + beta * curv[:m]) ** -0.5) < 1e-300  # true value exp(-2896)
        assert np.prod((1 + beta * curv[m:]) ** -0.5) == np.inf
    assert th.sorm_pi0(beta, curv) == pytest.approx(stats.norm.sf(beta), rel=1e-9)
    # constant curvature sum S: product -> exp(-beta S / 2)
    s_sum = 1.0
    curv = np.full(D_IMAGENET - 1, s_sum / (D_IMAGENET - 1))
    for b in (0.5, 2.0):
        assert th.sorm_pi0(b, curv) == pytest.approx(stats.norm.sf(b) * np.exp(-b * s_sum / 2), rel=1e-4)
    # convex onward x (kappa < 0) raises pi0 above Phi(-beta)
    assert th.sorm_pi0(1.0, -curv) > stats.norm.sf(1.0) > th.sorm_pi0(1.0, curv)


def _mc_sphere(distance, radius, sigma, d, inside, n, seed):
    rng = np.random.default_rng(seed)
    hits = 0
    centre_dist = radius - distance if inside else radius + distance
    for _ in range(n // 20_000):
        noise = sigma * rng.standard_normal((20_000, d))
        noise[:, 0] += centre_dist  # x - c along e_1
        in_ball = np.einsum("ij,ij->i", noise, noise) <= radius**2
        hits += int(np.count_nonzero(~in_ball if inside else in_ball))
    return hits / n


@pytest.mark.parametrize(
    ("distance", "inside", "seed"),
    [(0.0, False, 1), (0.1, False, 2), (0.25, False, 3), (0.0, True, 4), (0.1, True, 5), (0.3, True, 6)],
)
def test_pi0_sphere_monte_carlo_d64(distance, inside, seed):
    d, radius, sigma, n = 64, 1.0, 0.2, 100_000
    exact = th.pi0_sphere(distance, radius, sigma, d, inside)
    mc = _mc_sphere(distance, radius, sigma, d, inside, n, seed)
    se = math.sqrt(exact * (1 - exact) / n)
    assert abs(mc - exact) < 4 * se, (mc, exact, se)


def test_pi0_sphere_matches_ncx2_where_it_converges():
    for d in (1, 2, 3, 10, 64):
        for a in (0.01, 0.5, 2.0, 10.0):
            for beta in (0.0, 0.3, 1.0, 3.0):
                sigma = 0.1
                out = th.pi0_sphere(beta * sigma, a * sigma, sigma, d, False)
                assert out == pytest.approx(stats.ncx2.cdf(a**2, d, (a + beta) ** 2), rel=1e-8)
                if beta <= a:
                    out = th.pi0_sphere(beta * sigma, a * sigma, sigma, d, True)
                    assert out == pytest.approx(stats.ncx2.sf(a**2, d, (a - beta) ** 2), rel=1e-8)
    # x at the centre: ||sigma N||^2 / sigma^2 is central chi2_d
    assert th.pi0_sphere(0.3, 0.3, 0.1, 64, True) == pytest.approx(stats.chi2.sf(9.0, 64), rel=1e-9)


def _z_integral(beta, a, d, inside):
    """Independent representation: P[inside] = int phi(z) chi2_{d-1}.cdf((a^2 - (b - z)^2)) dz, b = a -/+ beta.

    The chi2 cdf is a near-step in z (width sqrt(2(d-1))/(2a)); quad is split around it.
    """
    k = d - 1
    sgn = 1.0 if inside else -1.0  # a - b

    def f(z):
        t = sgn * beta + z  # a - (b - z)
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * special.chdtr(k, t * (2 * a - t))

    def f_minus_phi(z):
        return f(z) - math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    z_step = (a - math.sqrt(a * a - k)) - sgn * beta
    w = math.sqrt(2 * k) / (2 * a)
    opts = {"epsabs": 0.0, "epsrel": 1e-12, "limit": 200}
    p_in = integrate.quad(f, -sgn * beta, z_step - 20 * w, **opts)[0]
    mid = [z_step + j * w for j in (-5, -2, 0, 2, 5)]
    p_in += integrate.quad(f, z_step - 20 * w, z_step + 20 * w, points=mid, **opts)[0]
    p_in += stats.norm.sf(z_step + 20 * w)
    tail_opts = {"epsabs": 1e-300, "epsrel": 1e-10, "limit": 200}
    p_in += integrate.quad(f_minus_phi, z_step + 20 * w, z_step + 60, **tail_opts)[0]
    return 1.0 - p_in if inside else p_in


@pytest.mark.parametrize(("s_sum", "sigma"), [(0.5, 0.05), (1.0, 0.15), (2.0, 0.25)])
def test_pi0_sphere_imagenet_dimension_vs_z_integral(s_sum, sigma):
    # radius chosen so that the curvature sum is S = (d-1) sigma / radius; noncentrality up to 9e10
    d = D_IMAGENET
    radius = (d - 1) * sigma / s_sum
    a = radius / sigma
    betas = np.array([0.0, 1.5, 4.0])
    for inside in (False, True):
        out = th.pi0_sphere(betas * sigma, radius, sigma, d, inside)
        ref = [_z_integral(b, a, d, inside) for b in betas]
        np.testing.assert_allclose(out, ref, rtol=1e-8)
        # high-dimensional limit: smoothed boundary shifted by S sigma / 2
        shift = -s_sum / 2 if inside else s_sum / 2
        np.testing.assert_allclose(out, stats.norm.sf(betas + shift), rtol=1e-3)
    # the two sides are complementary at the boundary
    both = th.pi0_sphere(0.0, radius, sigma, d, False) + th.pi0_sphere(0.0, radius, sigma, d, True)
    assert both == pytest.approx(1.0, abs=1e-9)


def test_pi0_sphere_broadcast_and_type():
    out = th.pi0_sphere([[0.0], [0.1]], [1.0, 2.0, 3.0], 0.2, 10, False)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3)
    assert out[1, 2] == pytest.approx(th.pi0_sphere(0.1, 3.0, 0.2, 10, False), rel=1e-14)
    assert isinstance(th.pi0_sphere(0.1, 1.0, 0.2, 10, False), float)
    # far from the boundary the probability decreases with distance
    vals = th.pi0_sphere(np.linspace(0, 1, 6), 1.0, 0.2, 64, False)
    assert np.all(np.diff(vals) < 0)


def test_sorm_vs_exact_sphere():
    # moderately curved sphere in d = 64: kappa = sigma / radius = 1/63, curvature sum S = 1
    d, sigma = 64, 0.1
    radius = 63 * sigma
    kappa = sigma / radius

    def rel_err(beta, inside):
        exact = th.pi0_sphere(beta * sigma, radius, sigma, d, inside)
        sorm = th.sorm_pi0(beta, np.full(d - 1, -kappa if inside else kappa))
        return sorm / exact - 1

    # concave case (x outside): SORM over-estimates, and its error shrinks as beta grows
    errs = [rel_err(b, False) for b in (0.5, 1.0, 2.0, 3.0)]
    assert all(e > 0 for e in errs)
    assert errs == sorted(errs, reverse=True)
    assert errs[-1] < 0.3
    assert errs[0] > 0.5
    # convex case (x inside): error is smaller at beta = 3 than at beta = 0.5
    assert abs(rel_err(3.0, True)) < abs(rel_err(0.5, True))
    # at beta = 0 SORM gives 1/2 whatever the curvature, while the exact value moves off 1/2 by ~S/2
    assert th.sorm_pi0(0.0, np.full(d - 1, kappa)) == 0.5
    assert th.pi0_sphere(0.0, radius, sigma, d, False) == pytest.approx(stats.norm.sf(0.5), abs=0.01)


# --------------------------------------------------------------------------------------------------
# eqs. (4)-(6) and the accelerated rule
# --------------------------------------------------------------------------------------------------
def test_pi0_threshold_paper_numbers():
    ns = [5, 10, 50, 100, 200]
    printed = [round(1 - th.pi0_threshold(n, 0.8), 3) for n in ns]
    exact = [round(1 - th.pi0_threshold_exact(n, 0.8), 3) for n in ns]
    assert printed == [0.673, 0.622, 0.558, 0.542, 0.530]
    assert exact == [0.673, 0.673, 0.569, 0.547, 0.532]
    # actual strict-majority probability at the printed threshold (paper-notes: 0.687, 0.756, 0.770)
    actual = [stats.binom.sf(n // 2, n, 1 - th.pi0_threshold(n, 0.8)) for n in (10, 50, 100)]
    assert [round(p, 3) for p in actual] == [0.687, 0.756, 0.770]


@pytest.mark.parametrize("pa", [0.5, 0.8, 0.95, 1.0])
def test_pi0_thresholds_against_binomial_tail(pa):
    ns = np.arange(1, 61)
    exact = th.pi0_threshold_exact(ns, pa)
    printed = th.pi0_threshold(ns, pa)
    assert isinstance(exact, np.ndarray) and exact.shape == ns.shape
    # strict majority S > n/2, S ~ B(n, pi1)
    p_exact = stats.binom.sf(ns // 2, ns, 1 - exact)
    p_printed = stats.binom.sf(ns // 2, ns, 1 - printed)
    np.testing.assert_allclose(p_exact, pa, rtol=1e-9)
    odd, even = ns % 2 == 1, ns % 2 == 0
    np.testing.assert_allclose(p_printed[odd], pa, rtol=1e-9)
    np.testing.assert_allclose(printed[odd], exact[odd], rtol=1e-9, atol=1e-15)
    if pa < 1:
        assert np.all(p_printed[even] < pa)
        assert np.all(exact[even] < printed[even])


def test_pi0_threshold_below_half_iff_pa_above_half():
    assert th.pi0_threshold(11, 0.5) == pytest.approx(0.5, rel=1e-12)
    assert th.pi0_threshold(11, 0.6) < 0.5 < th.pi0_threshold(11, 0.4)


def test_distance_bound():
    extra = [th.distance_bound(0.0, 1.0, n, 0.8) for n in (10, 50, 100)]
    assert [round(e, 3) for e in extra] == [0.311, 0.147, 0.105]
    # additive in the radius, linear in sigma
    assert th.distance_bound(0.3, 0.05, 10, 0.8) == pytest.approx(0.3 + 0.05 * extra[0], rel=1e-12)
    # exact quantile: ndtri(1 - pi0_threshold_exact)
    for n in (9, 10, 50):
        assert th.distance_bound(0.2, 0.1, n, 0.8, exact=True) == pytest.approx(
            0.2 + 0.1 * stats.norm.ppf(1 - th.pi0_threshold_exact(n, 0.8)), rel=1e-12
        )
    assert th.distance_bound(0, 1, 10, 0.8, exact=True) > th.distance_bound(0, 1, 10, 0.8)
    assert th.distance_bound(0, 1, 11, 0.8, exact=True) == pytest.approx(th.distance_bound(0, 1, 11, 0.8))
    assert th.distance_bound(0.4, 1.0, 11, 0.5) == pytest.approx(0.4, abs=1e-12)
    out = th.distance_bound([0.0, 0.1], 0.05, [10, 50], 0.8)
    assert isinstance(out, np.ndarray) and out.shape == (2,)


def test_votes_needed_awkward_floats():
    cases = {
        (10, 0.7): 7,
        (10, 0.3): 3,
        (100, 0.29): 29,
        (100, 0.57): 57,
        (3, 0.1): 1,
        (10, 0.8): 8,
        (50, 0.8): 40,
        (10, 0.55): 6,
        (10, 0.5): 5,
        (10, 1.0): 10,
        (10_000, 0.001): 10,
        (7, 0.5): 4,
    }
    for (n, pa), v in cases.items():
        out = th.votes_needed(n, pa)
        assert out == v and isinstance(out, int), (n, pa, out)
    arr = th.votes_needed([10, 50, 100], 0.8)
    assert isinstance(arr, np.ndarray) and arr.dtype.kind == "i"
    np.testing.assert_array_equal(arr, [8, 40, 80])


def test_accelerated_acceptance_paper_numbers():
    at_thr = [th.accelerated_acceptance(1 - th.pi0_threshold(n, 0.8), n, 0.8) for n in (10, 50, 100)]
    assert round(at_thr[0], 2) == 0.21
    assert 2.5e-4 < at_thr[1] < 3.5e-4
    assert at_thr[2] < 1e-6
    half = [
        optimize.brentq(lambda p, n=n: th.accelerated_acceptance(p, n, 0.8) - 0.5, 0.01, 0.99)
        for n in (10, 50, 100)
    ]
    assert [round(h, 2) for h in half] == [0.74, 0.79, 0.79]


def test_accelerated_acceptance_is_binomial_tail():
    n, pa = 10, 0.7
    pi1 = np.array([0.0, 0.3, 0.7, 1.0])
    brute = np.array([sum(stats.binom.pmf(j, n, p) for j in range(7, n + 1)) for p in pi1])
    np.testing.assert_allclose(th.accelerated_acceptance(pi1, n, pa), brute, rtol=1e-12, atol=1e-300)
    # P_a = 0.5 with even n: ties count as adversarial
    assert th.accelerated_acceptance(0.5, 10, 0.5) == pytest.approx(stats.binom.sf(4, 10, 0.5), rel=1e-12)
    assert isinstance(th.accelerated_acceptance(0.5, 10, 0.5), float)


# --------------------------------------------------------------------------------------------------
# error paths
# --------------------------------------------------------------------------------------------------
BAD_CALLS = [
    (th.certified_radius, (1.2, 0.25), {}, r"p_lower must be in \[0, 1\], got 1.2"),
    (th.certified_radius, (-0.1, 0.25), {}, "p_lower"),
    (th.certified_radius, (float("nan"), 0.25), {}, "p_lower"),
    (th.certified_radius, (0.9, -1.0), {}, r"sigma must be finite and > 0, got -1.0"),
    (th.certified_radius, (0.9, [0.1, 0.0]), {}, r"sigma .* got 0.0"),
    (th.certified_radius, ("abc", 0.1), {}, "p_lower"),
    (th.cohen_radius, (1.1, 0.0, 1.0), {}, "p_a"),
    (th.cohen_radius, (0.5, -0.1, 1.0), {}, "p_b"),
    (th.cohen_radius, (0.7, 0.4, 1.0), {}, r"p_a \+ p_b must be <= 1"),
    (th.cohen_radius, (0.7, 0.2, 0.0), {}, "sigma"),
    (th.clopper_pearson, (2.5, 10, 0.05), {}, r"k must be an integer >= 0, got 2.5"),
    (th.clopper_pearson, (-1, 10, 0.05), {}, "k must be"),
    (th.clopper_pearson, (11, 10, 0.05), {}, r"k must be <= n, got 11"),
    (th.clopper_pearson, (0, 0, 0.05), {}, r"n must be an integer >= 1, got 0"),
    (th.clopper_pearson, (1, True, 0.05), {}, "n must be"),
    (th.clopper_pearson, (1, 10, 0.0), {}, r"alpha must be in \(0, 1\), got 0.0"),
    (th.clopper_pearson, (1, 10, 1.0), {}, "alpha"),
    (th.max_certified_radius, (0, 0.001, 0.1), {}, "n must be"),
    (th.max_certified_radius, (100, 1.5, 0.1), {}, "alpha"),
    (th.max_certified_radius, (100, 0.001, -0.1), {}, "sigma"),
    (th.pi0_hyperplane, (np.inf,), {}, "beta must be finite"),
    (th.sorm_pi0, (-0.5, np.zeros(3)), {}, r"beta must be finite and >= 0, got -0.5"),
    (th.sorm_pi0, (1.0, np.zeros((2, 2))), {}, "curvatures must be a 1-D"),
    (th.sorm_pi0, (1.0, [0.0, np.nan]), {}, "curvatures must be finite"),
    (th.sorm_pi0, ([0.5, 2.0], [0.1, -0.5]), {}, r"beta=2.0 with kappa=-0.5"),
    (th.pi0_sphere, (-0.1, 1.0, 0.1, 10, False), {}, "distance must be finite and >= 0"),
    (th.pi0_sphere, (1.5, 1.0, 0.1, 10, True), {}, r"distance must be <= radius when inside=True, got 1.5"),
    (th.pi0_sphere, (0.1, 0.0, 0.1, 10, False), {}, "radius must be"),
    (th.pi0_sphere, (0.1, 1.0, -0.1, 10, False), {}, "sigma must be"),
    (th.pi0_sphere, (0.1, 1.0, 0.1, 0, False), {}, r"d must be an integer >= 1, got 0"),
    (th.pi0_sphere, (0.1, 1.0, 0.1, 2.5, False), {}, "d must be"),
    (th.pi0_sphere, (0.1, 1.0, 0.1, [3, 4], False), {}, "d must be a scalar"),
    (th.pi0_sphere, (0.1, 1.0, 0.1, 10, "yes"), {}, "inside must be a bool"),
    (th.pi0_threshold, (0, 0.8), {}, "n must be"),
    (th.pi0_threshold, (10, 0.0), {}, r"pa must be in \(0, 1\], got 0.0"),
    (th.pi0_threshold, (10, 1.01), {}, "pa"),
    (th.pi0_threshold_exact, (3.5, 0.8), {}, "n must be"),
    (th.pi0_threshold_exact, (10, -0.2), {}, "pa"),
    (th.distance_bound, (-0.1, 0.1, 10, 0.8), {}, r"radius must be finite and >= 0, got -0.1"),
    (th.distance_bound, (0.1, 0.0, 10, 0.8), {}, "sigma"),
    (th.distance_bound, (0.1, 0.1, 0, 0.8), {}, "n must be"),
    (th.distance_bound, (0.1, 0.1, 10, 2.0), {}, "pa"),
    (th.votes_needed, (0, 0.8), {}, "n must be"),
    (th.votes_needed, (10, 0.0), {}, "pa"),
    (th.accelerated_acceptance, (1.5, 10, 0.8), {}, "pi1"),
    (th.accelerated_acceptance, (0.5, 0, 0.8), {}, "n must be"),
    (th.accelerated_acceptance, (0.5, 10, 1.5), {}, "pa"),
]


@pytest.mark.parametrize(("func", "args", "kwargs", "match"), BAD_CALLS)
def test_value_errors(func, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        func(*args, **kwargs)
