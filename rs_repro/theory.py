"""Closed-form theory of randomized smoothing used by Maho, Furon and Le Merrer, "Randomized Smoothing
under Attack: How Good is it in Practice?" (ICASSP 2022, arXiv:2204.14187): the certified radius of
eq. (2) and its general form from Cohen, Rosenfeld and Kolter (ICML 2019, Thm. 1), the Clopper-Pearson
bound used by Cohen's CERTIFY, the SORM (Breitung) approximation of eq. (3) with its exact flat and
spherical counterparts, the condition of eq. (5) on pi0 for an adversarial example of level P_a (as
printed and in its exact strict-majority form), the distance bound of eq. (6), and the accelerated
"ceil(n P_a) wrong micro-decisions" acceptance rule that the paper's experiments actually use.

Every function accepts scalars or array_like inputs (broadcast together), returns a Python ``float``
(``int`` for counts) when all inputs are scalars and an ``np.ndarray`` otherwise, and raises
``ValueError`` naming the parameter, the bad value and what is accepted; nothing is silently clipped.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import integrate, special, stats

from rs_repro import checks

__all__ = [
    "accelerated_acceptance",
    "certified_radius",
    "clopper_pearson",
    "cohen_radius",
    "distance_bound",
    "max_certified_radius",
    "pi0_hyperplane",
    "pi0_sphere",
    "pi0_threshold",
    "pi0_threshold_exact",
    "sorm_pi0",
    "votes_needed",
]

#: Slack allowed on ``p_a + p_b <= 1`` in :func:`cohen_radius` (floating error in estimated probabilities).
PROB_SUM_TOL = 1e-9


# --------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------
def _first_bad(arr: np.ndarray, ok: np.ndarray) -> object:
    """First element of ``arr`` where ``ok`` is False, as a plain Python scalar."""
    return np.asarray(arr)[~ok].flat[0].item()


def _floats(name: str, x: ArrayLike) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise checks.rejected(name, x, "a real number or array of real numbers") from None
    return arr


def _check(name: str, arr: np.ndarray, ok: np.ndarray, accepted: str) -> None:
    """:func:`rs_repro.checks.rejected` for the first element of ``arr`` where ``ok`` is False, if any."""
    ok = np.asarray(ok, dtype=bool)
    if not ok.all():
        raise checks.rejected(name, _first_bad(np.broadcast_to(arr, ok.shape), ok), accepted)


def _prob(name: str, x: ArrayLike, *, low_open: bool = False) -> np.ndarray:
    """Probabilities in [0, 1] (or (0, 1] with ``low_open``); NaN is rejected."""
    arr = _floats(name, x)
    if low_open:
        _check(name, arr, (arr > 0) & (arr <= 1), "in (0, 1]")
    else:
        _check(name, arr, (arr >= 0) & (arr <= 1), "in [0, 1]")
    return arr


def _positive(name: str, x: ArrayLike) -> np.ndarray:
    arr = _floats(name, x)
    _check(name, arr, np.isfinite(arr) & (arr > 0), "finite and > 0")
    return arr


def _nonneg(name: str, x: ArrayLike) -> np.ndarray:
    arr = _floats(name, x)
    _check(name, arr, np.isfinite(arr) & (arr >= 0), "finite and >= 0")
    return arr


def _alpha(x: ArrayLike) -> np.ndarray:
    arr = _floats("alpha", x)
    _check("alpha", arr, (arr > 0) & (arr < 1), "in (0, 1)")
    return arr


def _ints(name: str, x: ArrayLike, minimum: int) -> np.ndarray:
    """Integer-valued input (ints or integral floats such as ``1e4``), each ``>= minimum``."""
    raw = np.asarray(x)
    if raw.dtype == bool or not (
        np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)
    ):
        raise checks.rejected(name, x, f"an integer >= {minimum}")
    if np.issubdtype(raw.dtype, np.floating):
        _check(name, raw, np.isfinite(raw) & (raw == np.floor(raw)), f"an integer >= {minimum}")
    _check(name, raw, raw >= minimum, f"an integer >= {minimum}")
    return raw.astype(np.int64)


def _is_scalar(*xs: ArrayLike) -> bool:
    return all(np.ndim(x) == 0 for x in xs)


def _out(value: np.ndarray, scalar: bool) -> float | np.ndarray:
    value = np.asarray(value, dtype=float)
    return float(value) if scalar else value


# --------------------------------------------------------------------------------------------------
# certification (eq. 2, Cohen et al.)
# --------------------------------------------------------------------------------------------------
def certified_radius(p_lower: ArrayLike, sigma: ArrayLike) -> float | np.ndarray:
    r"""Certified L2 radius of eq. (2): :math:`R = \sigma\,\Phi^{-1}(p)`.

    This is Cohen et al.'s Thm. 1 with :math:`p_B = 1 - p_A`. Put a genie-given probability of the top
    class in it for the ideal radius :math:`R(x, \sigma)`, or a one-sided lower confidence bound for
    the practical radius :math:`\underline R(x, \sigma)`.

    Parameters
    ----------
    p_lower : array_like
        Probability (or lower bound) of the top class under noise, in [0, 1].
    sigma : array_like
        Noise standard deviation, > 0.

    Returns
    -------
    float or np.ndarray
        The radius. It is ``0.0`` where ``p_lower <= 1/2``: there is no certificate and Cohen's
        CERTIFY abstains. It is ``inf`` where ``p_lower == 1``.

    Raises
    ------
    ValueError
        If ``p_lower`` is outside [0, 1] or ``sigma <= 0``.
    """
    p = _prob("p_lower", p_lower)
    s = _positive("sigma", sigma)
    p, s = np.broadcast_arrays(p, s)
    with np.errstate(invalid="ignore"):
        r = np.where(p > 0.5, s * special.ndtri(np.where(p > 0.5, p, 0.75)), 0.0)
    return _out(r, _is_scalar(p_lower, sigma))


def cohen_radius(p_a: ArrayLike, p_b: ArrayLike, sigma: ArrayLike) -> float | np.ndarray:
    r"""General certified radius of Cohen et al. (2019), Thm. 1.

    :math:`R = \frac{\sigma}{2}\big(\Phi^{-1}(p_A) - \Phi^{-1}(p_B)\big)`. With :math:`p_B = 1 - p_A`
    it reduces to eq. (2) of the paper (:func:`certified_radius`).

    Parameters
    ----------
    p_a : array_like
        Lower bound on the top-class probability, in [0, 1].
    p_b : array_like
        Upper bound on the runner-up probability, in [0, 1], with ``p_a + p_b <= 1``
        (up to ``PROB_SUM_TOL``).
    sigma : array_like
        Noise standard deviation, > 0.

    Returns
    -------
    float or np.ndarray
        The radius: ``0.0`` where ``p_a <= p_b`` (no certificate), ``inf`` where ``p_a == 1``.

    Raises
    ------
    ValueError
        If a probability is outside [0, 1], ``p_a + p_b > 1`` or ``sigma <= 0``.
    """
    pa = _prob("p_a", p_a)
    pb = _prob("p_b", p_b)
    s = _positive("sigma", sigma)
    pa, pb, s = np.broadcast_arrays(pa, pb, s)
    total = pa + pb
    _check("p_a + p_b", total, total <= 1 + PROB_SUM_TOL, f"<= 1 (tolerance {PROB_SUM_TOL:g})")
    cert = pa > pb
    with np.errstate(invalid="ignore"):
        r = 0.5 * s * (special.ndtri(np.where(cert, pa, 0.5)) - special.ndtri(np.where(cert, pb, 0.5)))
    return _out(np.where(cert, r, 0.0), _is_scalar(p_a, p_b, sigma))


def clopper_pearson(
    k: ArrayLike, n: ArrayLike, alpha: ArrayLike
) -> tuple[float | np.ndarray, float | np.ndarray]:
    r"""Two-sided exact (Clopper-Pearson) confidence interval at level ``1 - alpha`` for a binomial proportion.

    ``lower = Beta.ppf(alpha/2; k, n-k+1)`` (0 when ``k == 0``) and
    ``upper = Beta.ppf(1-alpha/2; k+1, n-k)`` (1 when ``k == n``).

    Cohen et al.'s CERTIFY uses the one-sided lower bound at level ``1 - alpha``, which is
    ``clopper_pearson(n_A, n, 2 * alpha)[0]``. Put into eq. (2) (:func:`certified_radius`), it gives the
    practical radius :math:`\underline R` of the paper.

    Parameters
    ----------
    k : array_like of int
        Number of successes, ``0 <= k <= n``.
    n : array_like of int
        Number of trials, ``>= 1``.
    alpha : array_like
        Total miscoverage, in (0, 1).

    Returns
    -------
    (lower, upper) : tuple of float or np.ndarray

    Raises
    ------
    ValueError
        If ``k`` or ``n`` is not an integer, ``n < 1``, ``k`` is not in [0, n], or ``alpha`` is not in (0, 1).
    """
    kk = _ints("k", k, 0)
    nn = _ints("n", n, 1)
    a = _alpha(alpha)
    kk, nn, a = np.broadcast_arrays(kk, nn, a)
    _check("k", kk, kk <= nn, "<= n")
    lo = np.where(kk == 0, 0.0, stats.beta.ppf(a / 2, np.maximum(kk, 1), nn - kk + 1))
    hi = np.where(kk == nn, 1.0, stats.beta.ppf(1 - a / 2, kk + 1, np.maximum(nn - kk, 1)))
    scalar = _is_scalar(k, n, alpha)
    return _out(lo, scalar), _out(hi, scalar)


def max_certified_radius(n: ArrayLike, alpha: ArrayLike, sigma: ArrayLike) -> float | np.ndarray:
    r"""Largest radius that CERTIFY with ``n`` samples can return: :math:`\sigma\,\Phi^{-1}(\alpha^{1/n})`.

    All ``n`` votes go to the top class. The one-sided Clopper-Pearson lower bound of ``n/n`` at level
    ``1 - alpha`` is :math:`\alpha^{1/n}`, and eq. (2) turns it into a radius. The result is 0 when
    :math:`\alpha^{1/n} \le 1/2`, i.e. when ``n`` is too small to certify anything.

    Parameters
    ----------
    n : array_like of int
        Number of Monte Carlo samples, ``>= 1``.
    alpha : array_like
        CERTIFY's failure probability, in (0, 1).
    sigma : array_like
        Noise standard deviation, > 0.

    Returns
    -------
    float or np.ndarray

    Raises
    ------
    ValueError
        On a non-integer or ``n < 1``, ``alpha`` outside (0, 1), or ``sigma <= 0``.
    """
    nn = _ints("n", n, 1)
    a = _alpha(alpha)
    s = _positive("sigma", sigma)
    p = np.exp(np.log(a) / nn)
    r = certified_radius(p, s)
    return _out(r, _is_scalar(n, alpha, sigma))


# --------------------------------------------------------------------------------------------------
# geometry of the boundary (eq. 3)
# --------------------------------------------------------------------------------------------------
def pi0_hyperplane(beta: ArrayLike) -> float | np.ndarray:
    r"""Exact :math:`\pi_0 = \Phi(-\beta)` for a flat boundary (eq. (3) with all :math:`\kappa_i = 0`).

    Parameters
    ----------
    beta : array_like
        Signed distance of ``x`` to the hyperplane in units of sigma (:math:`\beta = \delta/\sigma`),
        any finite real (negative means that ``x`` is on the other side).

    Returns
    -------
    float or np.ndarray
    """
    b = _floats("beta", beta)
    _check("beta", b, np.isfinite(b), "finite")
    return _out(special.ndtr(-b), _is_scalar(beta))


def sorm_pi0(beta: ArrayLike, curvatures: ArrayLike) -> float | np.ndarray:
    r"""SORM (Breitung) approximation of eq. (3): :math:`\pi_0 \approx \Phi(-\beta)\prod_i (1+\beta\kappa_i)^{-1/2}`.

    It is computed in log space, as :math:`\log\Phi(-\beta) - \tfrac12\sum_i \operatorname{log1p}(\beta\kappa_i)`,
    so that the :math:`d-1 = 150527` ImageNet factors neither underflow nor overflow.

    Sign convention of the paper: :math:`\kappa_i < 0` when the boundary is "convex onward x" (the
    region of ``x`` is locally convex, e.g. ``x`` inside a ball). This raises :math:`\pi_0` above
    :math:`\Phi(-\beta)`. With :math:`\kappa_i > 0` (concave, ``x`` outside a ball) it lowers it. For a
    sphere of radius ``r``, every :math:`\kappa_i = \pm\sigma/r` (see :func:`pi0_sphere`, the exact
    value). SORM is asymptotic in :math:`\beta \to \infty`. At small :math:`\beta`, the regime of
    :math:`\pi_0 \approx 1/2`, it is poor: at :math:`\beta = 0` it always returns 1/2, whatever the
    curvature.

    Parameters
    ----------
    beta : array_like
        Distance from ``x`` to the boundary in units of sigma, :math:`\beta = \delta/\sigma \ge 0`,
        any shape ``S``.
    curvatures : array_like
        1-D array of the :math:`d-1` principal curvatures in standard-normal units, i.e. sigma times the
        curvatures of the boundary in pixel space (so :math:`\beta\kappa_i = \delta\,\kappa_i^{pixel}`).

    Returns
    -------
    float or np.ndarray
        Shape ``S``.

    Raises
    ------
    ValueError
        If ``beta`` is negative or not finite, ``curvatures`` is not a finite 1-D array, or some
        :math:`1 + \beta\kappa_i \le 0` (the formula is then undefined).
    """
    b = _floats("beta", beta)
    _check("beta", b, np.isfinite(b) & (b >= 0), "finite and >= 0")
    kap = _floats("curvatures", curvatures)
    if kap.ndim != 1:
        raise ValueError(
            f"curvatures must be a 1-D array of the d-1 principal curvatures, got shape {kap.shape}"
        )
    _check("curvatures", kap, np.isfinite(kap), "finite")
    log_prod = np.empty(b.shape)
    kmin = kap.min() if kap.size else 0.0
    for idx, bi in np.ndenumerate(b):
        if 1.0 + bi * kmin <= 0.0:
            raise ValueError(
                f"1 + beta*kappa_i must be > 0 for all curvatures (SORM undefined), got beta={float(bi)!r} "
                f"with kappa={float(kmin)!r} (1 + beta*kappa = {float(1.0 + bi * kmin)!r})"
            )
        log_prod[idx] = -0.5 * np.sum(np.log1p(bi * kap))
    return _out(np.exp(special.log_ndtr(-b) + log_prod), _is_scalar(beta))


def _sphere_one(beta: float, a: float, k: int, inside: bool) -> float:
    """Exact crossing probability for one point; all lengths in units of sigma.

    ``a`` is the sphere radius, ``beta`` the distance of ``x`` to it, ``k = d - 1``.
    Write x + N - c = (b + z) e_1 + N_perp with b = ||x - c||, z ~ N(0,1), V = ||N_perp||^2 ~ chi2_k.
    Given V = v < a^2, the point is inside the ball iff z lies in [b - s, b + s] (up to the sign of z),
    where s = sqrt(a^2 - v). We integrate over theta with v = a^2 sin^2(theta), s = a cos(theta): the
    Jacobian removes the integrable singularities of the chi2 density at v = 0 (k = 1) and of s at
    v = a^2. The endpoints are b - s = (b - a) + m and b + s = (b + a) - m, with m = a - s =
    2 a sin^2(theta/2) (no cancellation) and b - a = +beta (outside) or -beta (inside).
    """
    if k == 0:  # d = 1: no orthogonal part
        if inside:
            return float(special.ndtr(-beta) + special.ndtr(-(2 * a - beta)))
        return float(special.ndtr(-beta) - special.ndtr(-(2 * a + beta)))

    half = 0.5 * k
    # log of chi2_k density at v times dv/dtheta = 2 a^2 sin cos, grouped to avoid log(0) * 0 issues
    log_const = math.log(2.0) + 2 * half * math.log(a) - special.gammaln(half) - half * math.log(2.0)

    def weight(theta: float) -> float:
        sin, cos = math.sin(theta), math.cos(theta)
        if cos <= 0.0:
            return 0.0
        return math.exp(log_const + special.xlogy(2 * half - 1, sin) + math.log(cos) - 0.5 * (a * sin) ** 2)

    if inside:  # P[land outside the ball] = P[V > a^2] + E[1{V<a^2} (Phi(b-s) + Phi(-(b+s)))]

        def integrand(theta: float) -> float:
            m = 2 * a * math.sin(0.5 * theta) ** 2
            return weight(theta) * (special.ndtr(m - beta) + special.ndtr(-(2 * a - beta - m)))

    else:  # P[land inside the ball] = E[1{V<a^2} (Phi(-(b-s)) - Phi(-(b+s)))]

        def integrand(theta: float) -> float:
            m = 2 * a * math.sin(0.5 * theta) ** 2
            return weight(theta) * (special.ndtr(-(beta + m)) - special.ndtr(-(2 * a + beta - m)))

    # break points at quantiles of chi2_k so that quad finds the bulk even when a^2 >> k
    qs = stats.chi2.ppf([1e-12, 1e-6, 0.01, 0.5, 0.99, 1 - 1e-6, 1 - 1e-12], k)
    pts = [math.asin(math.sqrt(q) / a) for q in qs if 0.0 < q < a * a]
    val = integrate.quad(
        integrand, 0.0, 0.5 * math.pi, points=pts or None, epsabs=0.0, epsrel=1e-11, limit=500
    )[0]
    if inside:
        val += float(special.chdtrc(k, a * a))
    return float(min(max(val, 0.0), 1.0))  # only quadrature round-off can leave [0, 1]


def pi0_sphere(
    distance: ArrayLike, radius: ArrayLike, sigma: ArrayLike, d: int, inside: bool
) -> float | np.ndarray:
    r"""Exact probability that :math:`x + \sigma N`, :math:`N \sim \mathcal N(0, I_d)`, crosses a sphere.

    ``x`` is at distance ``distance`` from the sphere of centre ``c`` and radius ``radius``. It is
    inside (``inside=True``, :math:`\|x-c\| = r - \delta`, needs :math:`\delta \le r`) or outside
    (:math:`\|x-c\| = r + \delta`). The result is :math:`\pi_0` of eq. (3) when the sphere is
    :math:`\partial f` and ``x`` is in class 1. It is the probability of landing outside the ball for
    ``inside=True``, and inside the ball otherwise.

    :math:`\|x+\sigma N-c\|^2/\sigma^2` is noncentral :math:`\chi^2_d` with noncentrality
    :math:`(\|x-c\|/\sigma)^2`. We do not use ``scipy.stats.ncx2``. At the ImageNet size
    :math:`d = 150528` with a curvature sum :math:`S = (d-1)\sigma/r = 0.5` (noncentrality
    :math:`\approx 9\cdot10^{10}`), its series fails to converge (RuntimeWarning) and returns e.g. 0.321
    instead of 0.401. At noncentrality :math:`10^{12}` it is wrong even for :math:`d = 1`. Instead we
    integrate the same exact distribution in one dimension. Split :math:`N` into its component
    :math:`z` along :math:`x - c` and :math:`V = \|N_\perp\|^2 \sim \chi^2_{d-1}`. Given :math:`V`, the
    crossing is a normal interval probability, and the result is its expectation over :math:`V`. It is
    computed with ``scipy.integrate.quad`` over :math:`\theta`, where
    :math:`V = (r/\sigma)^2\sin^2\theta` removes the endpoint singularities (relative tolerance 1e-11,
    about 1 ms per value). It agrees with ``ncx2`` to about 1e-11 wherever ``ncx2`` converges. It also
    agrees with the integral over :math:`z`, whose integrand is a near-step that needs splitting by hand.

    Relation to SORM (:func:`sorm_pi0`): a sphere has :math:`d-1` equal curvatures
    :math:`\kappa_i = +\sigma/r` for ``x`` outside (concave, :math:`\pi_0 < \Phi(-\beta)`) and
    :math:`-\sigma/r` for ``x`` inside (convex, :math:`\pi_0 > \Phi(-\beta)`). In high dimension with
    :math:`S = (d-1)\sigma/r` fixed, the exact value is close to :math:`\Phi(-\beta \mp S/2)` (outside /
    inside): the smoothed boundary is shifted by :math:`S\sigma/2`, even at :math:`\beta = 0`, where
    SORM returns 1/2.

    Parameters
    ----------
    distance : array_like
        Distance :math:`\delta \ge 0` from ``x`` to the sphere (same units as ``radius`` and ``sigma``).
    radius : array_like
        Sphere radius, > 0.
    sigma : array_like
        Noise standard deviation, > 0.
    d : int
        Dimension, >= 1.
    inside : bool
        Whether ``x`` is inside the ball.

    Returns
    -------
    float or np.ndarray
        Broadcast shape of ``distance``, ``radius`` and ``sigma``.

    Raises
    ------
    ValueError
        On ``distance < 0``, ``distance > radius`` with ``inside=True``, ``radius <= 0``, ``sigma <= 0``,
        a non-integer ``d < 1``, or a non-bool ``inside``.
    """
    dist = _nonneg("distance", distance)
    r = _positive("radius", radius)
    s = _positive("sigma", sigma)
    checks.require(np.ndim(d) == 0, "d", d, "a scalar integer >= 1")
    k = int(_ints("d", d, 1)) - 1
    checks.require(isinstance(inside, (bool, np.bool_)), "inside", inside, "a bool")
    dist, r, s = np.broadcast_arrays(dist, r, s)
    if inside:
        _check("distance", dist, dist <= r, "<= radius when inside=True")
    out = np.empty(dist.shape)
    for idx in np.ndindex(dist.shape):
        out[idx] = _sphere_one(dist[idx] / s[idx], r[idx] / s[idx], k, bool(inside))
    return _out(out, _is_scalar(distance, radius, sigma))


# --------------------------------------------------------------------------------------------------
# adversarial level P_a (eqs. 4-6) and the accelerated rule of the experiments
# --------------------------------------------------------------------------------------------------
def _pi1_quantile(n: np.ndarray, pa: np.ndarray, exact: bool) -> np.ndarray:
    """Smallest pi1 such that the level-``pa`` condition holds: I^-1_pa(k, k) or I^-1_pa(k, n-k+1)."""
    kk = 1 + n // 2
    second = n - kk + 1 if exact else kk
    return special.betaincinv(kk, second, pa)


def pi0_threshold(n: ArrayLike, pa: ArrayLike) -> float | np.ndarray:
    r"""Threshold on :math:`\pi_0(x_a)` of eq. (5) as printed: :math:`1 - I^{-1}_{P_a}(\tilde n, \tilde n)`.

    Here :math:`\tilde n = 1 + \lfloor n/2 \rfloor` and :math:`I^{-1}` is the inverse regularized
    incomplete beta function. :math:`x_a` is adversarial of level :math:`P_a` (eq. (4)) when
    :math:`\pi_0(x_a)` is below this value. The formula is exact for odd ``n``. For even ``n``,
    :math:`I_p(\tilde n, \tilde n)` is the probability of a strict majority among ``n + 1`` votes, so the
    threshold is too lax. See :func:`pi0_threshold_exact`. It is below 1/2 only when ``pa > 1/2``.

    Parameters
    ----------
    n : array_like of int
        Number of noisy micro-decisions, >= 1.
    pa : array_like
        Level of the adversarial example, in (0, 1].

    Returns
    -------
    float or np.ndarray

    Raises
    ------
    ValueError
        On a non-integer or ``n < 1``, or ``pa`` outside (0, 1].
    """
    nn = _ints("n", n, 1)
    p = _prob("pa", pa, low_open=True)
    return _out(1.0 - _pi1_quantile(nn, p, exact=False), _is_scalar(n, pa))


def pi0_threshold_exact(n: ArrayLike, pa: ArrayLike) -> float | np.ndarray:
    r"""Exact strict-majority version of eq. (5): :math:`1 - I^{-1}_{P_a}(k, n-k+1)`, :math:`k = \tilde n`.

    The adversarial event is :math:`S > n/2`, i.e. :math:`S \ge k` with :math:`S \sim B(n, \pi_1)`. Since
    :math:`\mathbb P[S \ge k] = I_{\pi_1}(k, n-k+1)`, this is the exact threshold. It equals
    :func:`pi0_threshold` for odd ``n`` and is stricter (smaller) for even ``n``.

    Parameters
    ----------
    n : array_like of int
        Number of noisy micro-decisions, >= 1.
    pa : array_like
        Level of the adversarial example, in (0, 1].

    Returns
    -------
    float or np.ndarray

    Raises
    ------
    ValueError
        On a non-integer or ``n < 1``, or ``pa`` outside (0, 1].
    """
    nn = _ints("n", n, 1)
    p = _prob("pa", pa, low_open=True)
    return _out(1.0 - _pi1_quantile(nn, p, exact=True), _is_scalar(n, pa))


def distance_bound(
    radius: ArrayLike, sigma: ArrayLike, n: ArrayLike, pa: ArrayLike, exact: bool = False
) -> float | np.ndarray:
    r"""Lower bound of eq. (6) on the distortion :math:`\|x_o - x_a\|` of a level-:math:`P_a` adversarial example.

    :math:`R(x_o, \sigma) + \sigma\,\Phi^{-1}\big(I^{-1}_{P_a}(\tilde n, \tilde n)\big)`. With ``exact=True``,
    the quantile is the exact strict-majority one, :math:`I^{-1}_{P_a}(\tilde n, n-\tilde n+1)`
    (see :func:`pi0_threshold_exact`). The second term is positive only when ``pa > 1/2``. It is negative
    below 1/2, and the bound then falls below ``radius``.

    Parameters
    ----------
    radius : array_like
        Certified radius at :math:`x_o` (ideal or lower bound), >= 0.
    sigma : array_like
        Noise standard deviation, > 0.
    n : array_like of int
        Number of noisy micro-decisions, >= 1.
    pa : array_like
        Level of the adversarial example, in (0, 1].
    exact : bool, default False
        Use the exact strict-majority quantile instead of the printed one.

    Returns
    -------
    float or np.ndarray

    Raises
    ------
    ValueError
        On ``radius < 0``, ``sigma <= 0``, a non-integer or ``n < 1``, or ``pa`` outside (0, 1].
    """
    r = _nonneg("radius", radius)
    s = _positive("sigma", sigma)
    nn = _ints("n", n, 1)
    p = _prob("pa", pa, low_open=True)
    q = _pi1_quantile(nn, p, exact=bool(exact))
    return _out(r + s * special.ndtri(q), _is_scalar(radius, sigma, n, pa))


def votes_needed(n: ArrayLike, pa: ArrayLike) -> int | np.ndarray:
    r"""Number of wrong micro-decisions, :math:`\lceil n P_a \rceil`, that the paper's accelerated rule requires.

    The product is rounded to 9 decimals before the ceiling, so that floating error does not add a
    vote: ``votes_needed(10, 0.7) == 7``, although ``10 * 0.7 = 7.000000000000001``.

    Parameters
    ----------
    n : array_like of int
        Number of noisy micro-decisions, >= 1.
    pa : array_like
        Level, in (0, 1].

    Returns
    -------
    int or np.ndarray of int64

    Raises
    ------
    ValueError
        On a non-integer or ``n < 1``, or ``pa`` outside (0, 1].
    """
    nn = _ints("n", n, 1)
    p = _prob("pa", pa, low_open=True)
    v = np.ceil(np.round(nn * p, 9)).astype(np.int64)
    return int(v) if _is_scalar(n, pa) else v


def accelerated_acceptance(pi1: ArrayLike, n: ArrayLike, pa: ArrayLike) -> float | np.ndarray:
    r"""Probability that the paper's accelerated rule declares a query adversarial.

    The rule (Sec. 3 of the paper) accepts when at least :math:`\lceil n P_a\rceil` of the ``n``
    micro-decisions are wrong. Each is wrong independently with probability :math:`\pi_1`, so the
    result is :math:`\mathbb P[B(n, \pi_1) \ge \lceil n P_a\rceil]`. This is not the probability of
    eq. (4). At the eq. (5) threshold it is much smaller than :math:`P_a`.

    Parameters
    ----------
    pi1 : array_like
        Probability that a micro-decision is wrong, in [0, 1].
    n : array_like of int
        Number of micro-decisions, >= 1.
    pa : array_like
        Level, in (0, 1].

    Returns
    -------
    float or np.ndarray

    Raises
    ------
    ValueError
        On ``pi1`` outside [0, 1], a non-integer or ``n < 1``, or ``pa`` outside (0, 1].
    """
    p1 = _prob("pi1", pi1)
    nn = _ints("n", n, 1)
    v = votes_needed(nn, pa)
    return _out(stats.binom.sf(v - 1, nn, p1), _is_scalar(pi1, n, pa))
