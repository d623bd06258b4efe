"""The claims beyond the paper, each with its judge: attackers that adapt to the randomness of the defence
and noise inside the network, measured by the adaptive-attacks chapter (:data:`BEYOND`).

Each judge reads the chapter's :class:`rs_repro.report.measurements.AdaptiveGrid` and decides its claim on
the confirmed distortions with the kernel's intervals and rules (:mod:`rs_repro.claims.kernel`); a claim's
``paper`` field holds what the literature reports.
"""

from __future__ import annotations

from collections.abc import Sequence

from rs_repro.claims.kernel import (
    BONFERRONI,
    CONFIDENCE,
    NOT_TESTABLE,
    SAME_DISTORTION,
    WORST,
    Claim,
    Judgement,
    Part,
    Protocol,
    decided,
    median_difference,
    median_ratio,
    percent,
    run_tests,
    too_few,
)
from rs_repro.report.measurements import AdaptiveGrid

#: The attack the adaptive-attacks chapter runs with k times the budget and with jittered repeats in every
#: profile: claims 12, 13 and 16 are about it alone.
WRAPPED = "HSJA"


#: The fields that identify a configuration of an adaptive-attacks grid.
_ADAPTIVE_KEY = ("attack", "repeats", "budget_factor", "jitter", "noise", "seeding", "sigma", "n")
#: Input noise drawn fresh for every query: the paper's g_{sigma,n}.
_FRESH = {"noise": "input", "seeding": "fresh"}


def _listing(kind: str, parts: Sequence[Part]) -> str:
    """``kind: <which> <interval>; ...`` for the measured text."""
    return f"{kind}: " + "; ".join(f"{p.which} {p.interval}" for p in parts)


def _adaptive(grid: AdaptiveGrid, number: int) -> Protocol | Judgement:
    """The confirmed distortions of ``grid`` for claim ``number``, or the not-testable judgement with fewer
    than 2 images."""
    return too_few(len(grid.images), "images") or Protocol.of(grid, "verified_l2", number)


def _scaled_setting(grid: AdaptiveGrid, number: int) -> tuple[Protocol, int, list[int]] | Judgement:
    """Claims 12 and 13 read :data:`WRAPPED` with repeat-and-vote at k times the budget against fresh input
    noise: the confirmed distortions, the largest such k and the n of the record, or the not-testable
    judgement."""
    fig = _adaptive(grid, number)
    if isinstance(fig, Judgement):
        return fig
    k = max((c.repeats for c in grid.configurations if c.attack == WRAPPED and c.budget_factor > 1
             and c.jitter == 0 and c.noise == "input" and c.seeding == "fresh"), default=None)
    ns = fig.levels("n", **_FRESH)
    if k is None or len(ns) < 2:
        return Judgement(f"no {WRAPPED} with repeat-and-vote at k times the budget, or one n only", NOT_TESTABLE)
    return fig, k, ns


def judge_adaptive_fewer_samples(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 12: against HSJA (:data:`WRAPPED`) repeating each query k times with k times
    the budget (the largest k), fewer samples n still give larger confirmed distortions.

    The per-image paired differences between the smallest and the largest n, pooled over sigma (input noise,
    fresh); statistic: their median. Holds when its interval is above 0, does not hold when below,
    undecided otherwise; not testable without that attacker or with one n.
    """
    setting = _scaled_setting(grid, 12)
    if isinstance(setting, Judgement):
        return setting
    fig, k, ns = setting
    kind = f"median paired difference n={ns[0]} − n={ns[-1]}, ×{k} with {k}× budget"
    pair = fig.pairs({"n": (ns[0], ns[-1])}, _ADAPTIVE_KEY, attack=WRAPPED, repeats=k, budget_factor=k, jitter=0.0,
                     **_FRESH)
    if not pair[0]:
        return Judgement(f"no {WRAPPED} ×{k} at both n", NOT_TESTABLE)
    parts = run_tests([fig.test(kind, WRAPPED, median_difference, pair, 0)])
    return decided(f"{_listing(kind + ' (pooled over σ)', parts)}; {fig.sample()}", parts)


def judge_cost_multiplier(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 13: few samples only multiply HSJA's (:data:`WRAPPED`) cost. With k repeats and
    k times the budget (the largest k), it reaches on the smallest n a confirmed distortion no larger than the
    plain attack on the largest n.

    Statistic: the pooled median (over images and sigma) of the first over that of the second. Holds when the
    interval is below 1 + SAME_DISTORTION, does not hold when above, undecided otherwise.
    """
    setting = _scaled_setting(grid, 13)
    if isinstance(setting, Judgement):
        return setting
    fig, k, ns = setting
    kind = f"median ×{k} with {k}× budget at n={ns[0]} / median plain at n={ns[-1]}"
    repeated = fig.columns(attack=WRAPPED, repeats=k, budget_factor=k, jitter=0.0, n=ns[0], **_FRESH)
    plain = fig.columns(attack=WRAPPED, repeats=1, n=ns[-1], **_FRESH)
    if not repeated or not plain:
        return Judgement(f"{WRAPPED} not run both ways", NOT_TESTABLE)
    parts = run_tests([fig.test(kind, WRAPPED, median_ratio, (repeated, plain), 1 + SAME_DISTORTION, above=False)])
    return decided(f"{_listing(kind + ' (pooled over σ)', parts)}; {fig.sample()}", parts)


def judge_equal_budget_repeats(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 14: at the same total budget, repeating each query gives the attacker larger
    confirmed distortions (it spends k queries on one answer).

    Per attack and k, the per-image paired differences repeat-and-vote − plain at the smallest n, pooled over
    sigma (input noise, fresh); statistic: their median. Holds when every interval (Bonferroni over them) is
    above 0, does not hold when one is below 0, undecided otherwise.
    """
    fig = _adaptive(grid, 14)
    if isinstance(fig, Judgement):
        return fig
    ns = fig.levels("n", **_FRESH)
    if not ns:
        return Judgement("no input-noise defence", NOT_TESTABLE)
    kind, tests = f"median paired difference repeat-and-vote − plain at n={ns[0]}, equal budget", []
    for k in fig.levels("repeats", budget_factor=1, **_FRESH):
        if k == 1:
            continue
        for attack in fig.levels("attack", repeats=k, budget_factor=1, **_FRESH):
            pair = fig.pairs({"repeats": (k, 1)}, _ADAPTIVE_KEY, attack=attack, budget_factor=1, n=ns[0], **_FRESH)
            if pair[0]:
                tests.append(fig.test(kind, f"{attack} ×{k}", median_difference, pair, 0))
    if not tests:
        return Judgement("no repeat-and-vote attacker at equal budget", NOT_TESTABLE)
    parts = run_tests(tests)
    return decided(f"{_listing(kind + ' (pooled over σ)', parts)}; {fig.sample()}", parts)


def judge_popskipjump(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 15: PopSkipJump needs smaller confirmed distortions than HSJA against
    g_{sigma,n}, at the same budget.

    Per n, the per-image paired differences PopSkipJump − HSJA (plain, input noise, fresh), pooled over sigma;
    statistic: their median. Holds when every interval (Bonferroni over the n) is below 0, does not hold when
    one is above 0, undecided otherwise.
    """
    fig = _adaptive(grid, 15)
    if isinstance(fig, Judgement):
        return fig
    kind, tests = "median paired difference PopSkipJump − HSJA", []
    for n in fig.levels("n", **_FRESH):
        pair = fig.pairs({"attack": ("PopSkipJump", "HSJA")}, _ADAPTIVE_KEY, repeats=1, n=n, **_FRESH)
        if pair[0]:
            tests.append(fig.test(kind, f"n={n}", median_difference, pair, 0, above=False))
    if not tests:
        return Judgement("PopSkipJump and HSJA not both run", NOT_TESTABLE)
    parts = run_tests(tests)
    return decided(f"{_listing(kind + ' (pooled over σ)', parts)}; {fig.sample()}", parts)


def judge_jittered_repeats(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 16: against a defence that seeds its noise from a hash of the input, HSJA
    (:data:`WRAPPED`) with jittered repeats and k times the budget gives smaller confirmed distortions than the
    plain HSJA.

    Per k, the per-image paired differences jittered repeats − plain (input-hash seeding), pooled over sigma
    and n; statistic: their median. Holds when every interval (Bonferroni over the k) is below 0, does not hold
    when one is above 0, undecided otherwise.
    """
    fig = _adaptive(grid, 16)
    if isinstance(fig, Judgement):
        return fig
    hashed = {"noise": "input", "seeding": "input-hash"}
    kind, tests = f"median paired difference {WRAPPED} jittered repeats − plain, input-hash seeding", []
    for k, jitter in dict.fromkeys((c.repeats, c.jitter) for c in grid.configurations
                                   if c.attack == WRAPPED and c.seeding == "input-hash" and c.jitter > 0):
        pair = fig.pairs({"repeats": (k, 1), "budget_factor": (k, 1), "jitter": (jitter, 0.0)}, _ADAPTIVE_KEY,
                         attack=WRAPPED, **hashed)
        if pair[0]:
            tests.append(fig.test(kind, f"×{k}", median_difference, pair, 0, above=False))
    if not tests:
        return Judgement(f"no {WRAPPED} with jittered repeats against input-hash seeding", NOT_TESTABLE)
    parts = run_tests(tests)
    return decided(f"{_listing(kind + ' (pooled over σ, n)', parts)}; {fig.sample()}", parts)


def judge_hidden_noise(grid: AdaptiveGrid) -> Judgement:
    """Beyond the paper, claim 17: noise after the first layer, at the clean accuracy of the input noise,
    gives larger confirmed distortions than input noise.

    Per law, the per-image paired differences hidden − input noise (plain attacks, fresh noise), pooled over
    the attacks, sigma and n; statistic: their median. Holds when every interval (Bonferroni over the laws) is
    above 0, does not hold when one is below 0, undecided otherwise. The clean accuracies are listed beside
    (the calibration matched them on other test images).
    """
    fig = _adaptive(grid, 17)
    if isinstance(fig, Judgement):
        return fig
    kind, tests, accuracies = "median paired difference hidden − input noise", [], []
    for noise in fig.levels("noise"):
        if noise == "input":
            continue
        hidden, plain = fig.pairs({"noise": (noise, "input")}, _ADAPTIVE_KEY, repeats=1, seeding="fresh")
        if hidden:
            tests.append(fig.test(kind, noise, median_difference, (hidden, plain), 0))
            defences = dict.fromkeys((a.sigma, a.n, a.correct / a.tested, b.correct / b.tested)
                                     for a, b in ((grid.configurations[j], grid.configurations[k])
                                                  for j, k in zip(hidden, plain, strict=True)))
            accuracies.append(f"{noise}: " + ", ".join(f"σ={sigma:g} n={n} {hid:.3f} vs {inp:.3f}"
                                                       for sigma, n, hid, inp in defences))
    if not tests:
        return Judgement("no hidden-noise defence", NOT_TESTABLE)
    parts = run_tests(tests)
    return decided(f"{_listing(kind + ' (pooled over attacks, σ, n)', parts)}; clean accuracy hidden vs input: "
                   f"{'; '.join(accuracies)}; {fig.sample()}", parts)


#: The claims beyond the paper, measured by the adaptive-attacks chapter (attackers that adapt to the
#: randomness, noise inside the network); their ``paper`` field holds what the literature reports.
BEYOND: tuple[Claim, ...] = (
    Claim(12, f"Against {WRAPPED} repeating each query k times with k times the budget, fewer samples n still "
              "give larger distortions.",
          "the paper's advice (fewer n defend better) was measured against attacks as they are", "adaptive_attacks",
          f"{WRAPPED} wrapped with the largest k at k× budget, median paired difference of confirmed distortion at "
          "the smallest n minus the largest (input noise, pooled over σ): holds if its "
          f"{percent(CONFIDENCE)} interval is above 0, does not hold if below, else undecided",
          judge_adaptive_fewer_samples),
    Claim(13, f"Few samples only multiply {WRAPPED}'s cost: with k repeats and k times the budget, it does as well "
              "on the smallest n as the plain attack on the largest n.",
          "Qin et al. (NeurIPS 2021): the defence's effect depends on its noise against the attacker's",
          "adaptive_attacks",
          f"median confirmed distortion of {WRAPPED} with the largest k at k× budget on the smallest n over the plain "
          f"{WRAPPED}'s on the largest n (pooled over σ): holds if its {percent(CONFIDENCE)} interval is below "
          f"{1 + SAME_DISTORTION:g}, does not hold if above, else undecided", judge_cost_multiplier),
    Claim(14, "At the same total budget, repeating each query gives the attacker larger distortions.",
          "a k-repeat spends k queries on one answer", "adaptive_attacks",
          "per attack and k, median paired difference repeat-and-vote − plain at the smallest n (input noise, "
          f"pooled over σ): holds if every interval is above 0, does not hold if one is below, else undecided; "
          f"{BONFERRONI}; {WORST}", judge_equal_budget_repeats),
    Claim(15, "PopSkipJump needs smaller distortions than HSJA against g_{σ,n} at the same budget.",
          "Simon-Gabriel et al. (ICML 2021): randomized defences give almost no extra robustness against it",
          "adaptive_attacks",
          "per n, median paired difference PopSkipJump − HSJA (input noise, pooled over σ): holds if every "
          f"interval is below 0, does not hold if one is above, else undecided; {BONFERRONI}; {WORST}",
          judge_popskipjump),
    Claim(16, f"Seeding the noise from a hash of the input does not stop {WRAPPED} repeating at jittered points: "
              f"with k times the budget, its distortion is smaller than the plain {WRAPPED}'s.",
          "Gao et al. (NeurIPS 2022) on the limits of stochastic pre-processing", "adaptive_attacks",
          f"per k, median paired difference {WRAPPED} with jittered repeats (k× budget) − plain {WRAPPED} against "
          "input-hash seeding (pooled over σ, n): holds if every interval is below 0, does not hold if one is "
          f"above, else undecided; {BONFERRONI}; {WORST}", judge_jittered_repeats),
    Claim(17, "Noise after the first layer, at the clean accuracy of input noise, gives larger distortions than "
              "input noise.",
          "Pinot et al. (NeurIPS 2019): noise injection in the network gives robustness", "adaptive_attacks",
          "per law, median paired difference hidden − input noise (plain attacks, pooled over attacks, σ, n): holds "
          f"if every interval is above 0, does not hold if one is below, else undecided; {BONFERRONI}; {WORST}",
          judge_hidden_noise),
)
