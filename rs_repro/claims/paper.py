"""The paper's claims, each with its judge: the headline claims of Maho, Furon and Le Merrer (ICASSP 2022).

The claims are those of ``paper-notes.md`` section 4, restated in our words (:data:`CLAIMS`). Each judge reads
the typed record of the chapter that measures its claim and decides it with the kernel's intervals and rules
(:mod:`rs_repro.claims.kernel`). Every parameter (the levels of sigma, n and P_a, the attacks) is read from
the record. Medians of few units (Fig. 1's images, Fig. 3's segments) have exact order-statistic intervals,
and claim 4's accuracies an exact paired McNemar test. Claim 1 is not testable when the attacks converged;
claim 4 is undecided when its premise is not established. The Fig. 5 claims 2-6 and 10 are judged on the
confirmed distortions (eq. 4 confirmed with fresh votes, :func:`rs_repro.attacks.verification.push_to_level`)
and, beside, on the paper's protocol (the distortions the attacks reported under the ceil(n P_a) rule).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from rs_repro.claims.kernel import (
    BONFERRONI,
    CONFIDENCE,
    CONVERGED,
    EQ5_TOLERANCE,
    MAX_GAIN,
    MIN_PUSH,
    NOT_TESTABLE,
    PA_EFFECT,
    SAME_ACCURACY,
    SAME_DISTORTION,
    SIGNIFICANCE,
    WELL_CORRELATED,
    WORST,
    Claim,
    Judgement,
    Protocol,
    Test,
    claim_seed,
    decided,
    family,
    label,
    median_difference,
    median_ratio,
    percent,
    run_tests,
    too_few,
    worst_part,
)
from rs_repro.report import verdicts
from rs_repro.report.measurements import (
    AttackConfiguration,
    AttackGrid,
    BisectionSpread,
    BoundaryPush,
    Crossing,
    NormalAgreement,
    ThresholdCheck,
)
from rs_repro.report.paper import DISTORTION_OVER_RADIUS
from rs_repro.report.verdicts import FAILS, HOLDS, UNDECIDED, Interval

#: The attack whose distortions claims 3 and 5 single out.
RAYS = "RayS"
#: The attacks of claim 10.
ADVTRAIN_ATTACKS = ("HSJA", "SurFree")


def _ratios(rows: np.ndarray, groups: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """:func:`~rs_repro.claims.kernel.median_ratio` of each pair of consecutive groups (numerator, denominator,
    numerator, ...)."""
    return [median_ratio(rows, top, bottom) for top, bottom in zip(groups[::2], groups[1::2], strict=True)]


def _first_below_others(rows: np.ndarray, *groups: Sequence[int]) -> np.ndarray:
    """Of the ratios of the medians of consecutive ``groups`` (numerator, denominator, numerator, ...;
    :func:`~rs_repro.claims.kernel.median_ratio`), the first minus the smallest of the others (claim 3)."""
    first, *others = _ratios(rows, groups)
    return verdicts.paired_difference(first, np.min(others, axis=0))


def _first_effect_above_others(rows: np.ndarray, *groups: Sequence[int]) -> np.ndarray:
    """Of the ratios of the medians of consecutive ``groups`` (numerator, denominator, numerator, ...;
    :func:`~rs_repro.claims.kernel.median_ratio`), the size (absolute log ratio) of the first minus the largest
    size of the others (claim 6: the effect, of either sign, is largest for the first)."""
    with np.errstate(divide="ignore"):
        first, *others = (np.abs(np.log(r)) for r in _ratios(rows, groups))
    return verdicts.paired_difference(first, np.max(others, axis=0))


def _accuracy_difference(first: AttackConfiguration, second: AttackConfiguration, *, confidence: float) -> Interval:
    """The clean accuracy of ``first`` minus that of ``second``, from their Clopper-Pearson intervals at
    (1 + ``confidence``) / 2 each, so that their difference covers at ``confidence`` or more
    (:func:`rs_repro.report.verdicts.difference`)."""
    each = (1 + confidence) / 2
    return verdicts.difference(verdicts.proportion(first.correct, first.tested, each),
                               verdicts.proportion(second.correct, second.tested, each))


def _on_both_protocols(grid: AttackGrid, number: int, rule: Callable[[Protocol], Judgement]) -> Judgement:
    """``rule`` on the confirmed distortions, with the paper's protocol (the reported ones) beside."""
    few = too_few(len(grid.images), "images")
    if few is not None:
        return dataclasses.replace(few, protocol=few)
    return dataclasses.replace(rule(Protocol.of(grid, "verified_l2", number)),
                               protocol=rule(Protocol.of(grid, "reported_l2", number)))


def undefended_over_minimal(grid: AttackGrid) -> dict[str, Interval]:
    """Per attack, how far from the white-box floor it ends on the undefended model (claim 1's precondition).

    The median distortion the attack reported on the undefended standard model over the median white-box
    minimal distortion of the same images (the record's ``minimal_l2``), with its 95% bootstrap interval over
    the images from claim 1's seed.

    Parameters
    ----------
    grid : rs_repro.report.measurements.AttackGrid
        A Fig. 5 record of 2 images or more.

    Returns
    -------
    dict of str to rs_repro.report.verdicts.Interval
        By attack, in the record's order; attacks without a configuration on the undefended model left out.
    """
    fig = Protocol.of(grid, "reported_l2", 1)
    found = {}
    for attack in fig.attacks:
        j = fig.find(model="standard", sigma=None, attack=attack)
        if j is not None:
            rows = np.column_stack([fig.distortion[:, j], grid.minimal_l2])
            found[attack] = verdicts.bootstrap(rows, partial(median_ratio, numerator=[0], denominator=[1]),
                                               seed=fig.seed)
    return found


#: What claim 1 compares to the paper's factor.
OVER_RADIUS = "median confirmed distortion / median certified radius"


def _certificate_ratio(fig: Protocol, column: int, *, confidence: float = CONFIDENCE) -> Interval:
    """Claim 1's statistic on configuration ``column`` of ``fig`` (confirmed distortions), with its bootstrap
    interval at ``confidence``."""
    fig.read.add(column)
    rows = np.column_stack([fig.distortion[:, column], fig.grid.configurations[column].radius])
    return verdicts.bootstrap(rows, partial(median_ratio, numerator=[0], denominator=[1]), seed=fig.seed,
                              confidence=confidence)


def certificate_ratios(grid: AttackGrid) -> list[tuple[AttackConfiguration, Interval | None]]:
    """Claim 1's statistic on every smoothed configuration: the median confirmed distortion over the median
    certified radius of the same images, with its (pointwise) 95% bootstrap interval over the images from
    claim 1's seed.

    Parameters
    ----------
    grid : rs_repro.report.measurements.AttackGrid
        A Fig. 5 record of 2 images or more.

    Returns
    -------
    list of (rs_repro.report.measurements.AttackConfiguration, rs_repro.report.verdicts.Interval or None)
        The configurations with a certified radius, in the record's order; ``None`` where the median radius
        is 0 (CERTIFY abstains on half of the images or more), which gives no ratio.
    """
    fig = Protocol.of(grid, "verified_l2", 1)
    return [(c, None if verdicts.median(c.radius) == 0 else _certificate_ratio(fig, j))
            for j, c in enumerate(grid.configurations) if c.radius is not None]


def judge_certificate_ratio(grid: AttackGrid) -> Judgement:
    """Claim 1 (ICASSP 2022, section 4): black-box distortions are at least 30 times the certified radius.

    Not testable when, for every attack, the median distortion it reported on the undefended model is within
    :data:`~rs_repro.claims.kernel.CONVERGED` times the median white-box minimal distortion on the same images
    (:func:`undefended_over_minimal`): the attacks have converged, so the attack inefficiency behind the
    paper's factor cannot appear. Otherwise, for each smoothed configuration of the attacks that did not
    converge, the ratio of the median confirmed distortion to the median certified radius of the same images,
    with its bootstrap interval, Bonferroni-corrected over the configurations: holds if every interval is
    above 30, does not hold if one is below, undecided otherwise; the headline is the worst of them. A
    configuration whose median radius is 0 (CERTIFY abstains on half of the images or more) has no ratio
    and is named, left out.
    """
    few = too_few(len(grid.images), "images")
    if few is not None:
        return few
    convergence = {attack: interval.estimate for attack, interval in undefended_over_minimal(grid).items()}
    if not convergence:
        return Judgement("no attack on the undefended model was recorded", NOT_TESTABLE)
    factors = ", ".join(f"{a} ×{verdicts.shown(r, (CONVERGED,))}" for a, r in convergence.items())
    converged = [a for a, r in convergence.items() if r <= CONVERGED]
    if len(converged) == len(convergence):
        return Judgement(f"median reported distortion on the undefended model over the white-box minimal one: "
                         f"{factors}, all within ×{CONVERGED:g}: the attacks converged, so the attack "
                         f"inefficiency behind the paper's {DISTORTION_OVER_RADIUS}× cannot appear", NOT_TESTABLE)
    fig = Protocol.of(grid, "verified_l2", 1)
    tests, zero = [], []
    for j, c in enumerate(grid.configurations):
        if c.radius is None or c.attack in converged:
            continue
        if verdicts.median(c.radius) == 0:
            zero.append(f"{c.attack} {label(c)}")
        else:
            tests.append(Test(OVER_RADIUS, f"{c.attack} {label(c)}", partial(_certificate_ratio, fig, j),
                              DISTORTION_OVER_RADIUS))
    left_out = (f"; converged, left out: {', '.join(converged)}" if converged else "") + \
        (f"; median radius 0, no ratio: {', '.join(zero)}" if zero else "")
    head = f"undefended / white-box minimal distortion {factors}{left_out}"
    if not tests:
        return Judgement(f"{head}; no smoothed configuration with a positive median certified radius", NOT_TESTABLE)
    parts = run_tests(tests)
    worst = worst_part(parts)
    by_attack = {a: [p for p in parts if p.which.startswith(a + " ")] for a in fig.attacks}
    listed = "; ".join(f"{a}: " + ", ".join(f"{p.which.removeprefix(a + ' ')} {p.interval}" for p in judged)
                       for a, judged in by_attack.items() if judged)
    return decided(f"{head}; {OVER_RADIUS}, worst {worst.interval} ({worst.which}); every one: {listed}; "
                   f"{fig.sample()}", parts)


def _fewer_samples(fig: Protocol) -> Judgement:
    """Claim 2's rule on one protocol (:func:`judge_fewer_samples`)."""
    ns = fig.levels("n", model="standard")
    if len(ns) < 2:
        return Judgement(f"one n only ({', '.join(map(str, ns)) or 'none'})", NOT_TESTABLE)
    kind, tests = f"median paired difference n={ns[0]} − n={ns[-1]}", []
    for attack in fig.attacks:
        small, large = fig.pairs({"n": (ns[0], ns[-1])}, model="standard", attack=attack)
        if small:
            tests.append(fig.test(kind, attack, median_difference, (small, large), 0))
    if not tests:
        return Judgement(f"no (σ, Pa) at both n={ns[0]} and n={ns[-1]}", NOT_TESTABLE)
    parts = run_tests(tests)
    return decided(f"{kind} (pooled over σ, Pa): " + "; ".join(f"{p.which} {p.interval}" for p in parts)
                   + f"; {fig.sample()}", parts)


def judge_fewer_samples(grid: AttackGrid) -> Judgement:
    """Claim 2 (ICASSP 2022, section 4, Fig. 5): fewer Monte Carlo samples n give larger distortions.

    Per attack, on the smoothed standard model, the per-image paired differences between the smallest and
    the largest n, pooled over the (sigma, P_a) pairs; statistic: their median. Holds when every attack's
    interval (Bonferroni over the attacks) is above 0, does not hold when one is below 0, undecided
    otherwise. On the confirmed distortions, with the paper's protocol beside.
    """
    return _on_both_protocols(grid, 2, _fewer_samples)


def _rays_least_affected(fig: Protocol) -> Judgement:
    """Claim 3's rule on one protocol (:func:`judge_rays_least_affected`)."""
    groups = {}
    for attack in fig.attacks:
        smoothed = fig.columns(smoothed=True, model="standard", attack=attack)
        undefended = fig.find(model="standard", sigma=None, attack=attack)
        if smoothed and undefended is not None:
            groups[attack] = (smoothed, [undefended])
    if RAYS not in groups or len(groups) < 2:
        return Judgement(f"needs {RAYS} and another attack, with and without smoothing", NOT_TESTABLE)
    order = [RAYS, *(a for a in groups if a != RAYS)]
    factors = ", ".join(f"{a} ×{float(median_ratio(fig.distortion, *groups[a])):.2f}" for a in order)
    (part,) = run_tests([fig.test(f"{RAYS}'s factor with RS / without minus the smallest other", "",
                                  _first_below_others, [group for a in order for group in groups[a]], 0,
                                  above=False)])
    return decided(f"median distortion with RS / without: {factors}; {RAYS} minus the smallest other "
                   f"{part.interval}; {fig.sample()}", [part])


def judge_rays_least_affected(grid: AttackGrid) -> Judgement:
    """Claim 3 (ICASSP 2022, section 4, Fig. 5): RayS is the attack least affected by smoothing.

    Per attack, the factor median distortion over the smoothed standard configurations (pooled) / median
    distortion on the undefended model; statistic: the factor of RayS minus the smallest factor of the other
    attacks. Holds if its interval is below 0, does not hold if above, undecided otherwise.
    """
    return _on_both_protocols(grid, 3, _rays_least_affected)


def _accuracy_cost(first: AttackConfiguration, second: AttackConfiguration) -> tuple[str, str]:
    """Claim 4's premise at one n: whether ``first`` (the larger sigma) is less accurate than ``second`` on
    the same images, by exact one-sided McNemar tests at :data:`~rs_repro.claims.kernel.SIGNIFICANCE`.

    Returns ``"cost"`` (significantly less accurate), ``"gain"`` (significantly more) or ``"none"``, and
    the text that says it.
    """
    a, b = np.asarray(first.correct_images, dtype=bool), np.asarray(second.correct_images, dtype=bool)
    less, more = verdicts.mcnemar(a, b, "less"), verdicts.mcnemar(a, b, "greater")
    found = "cost" if less < SIGNIFICANCE else "gain" if more < SIGNIFICANCE else "none"
    return found, (f"n={first.n}: {first.accuracy:.3f} vs {second.accuracy:.3f}, right at σ={second.sigma:g} only "
                   f"on {int(np.sum(b & ~a))} images and at σ={first.sigma:g} only on {int(np.sum(a & ~b))}, "
                   f"exact one-sided McNemar p = {verdicts.shown(less, (SIGNIFICANCE,), 2)}")


def _larger_sigma(fig: Protocol) -> Judgement:
    """Claim 4's rule on one protocol (:func:`judge_larger_sigma`)."""
    sigmas = fig.levels("sigma", model="standard")
    if len(sigmas) < 2:
        return Judgement("one σ only", NOT_TESTABLE)
    small, large = sigmas[0], sigmas[-1]
    premise, images = [], 0
    for n in fig.levels("n", model="standard"):
        j, k = fig.find(model="standard", sigma=large, n=n), fig.find(model="standard", sigma=small, n=n)
        if j is None or k is None:
            continue
        first, second = fig.grid.configurations[j], fig.grid.configurations[k]
        if not first.correct_images or len(first.correct_images) != len(second.correct_images):
            return Judgement(f"no per-image accuracies of σ={large:g} and σ={small:g} on the same images",
                             NOT_TESTABLE)
        premise.append(_accuracy_cost(first, second))
        images = len(first.correct_images)
    kind, tests, levels = f"median distortion ratio σ={large:g} / σ={small:g}", [], []
    for pa in fig.levels("pa", model="standard"):
        for attack in fig.attacks:
            pair = fig.pairs({"sigma": (large, small)}, model="standard", attack=attack, pa=pa)
            if pair[0]:
                tests.append(fig.test(kind, f"{attack}, Pa={pa:g}", median_ratio, pair, MAX_GAIN, above=False))
                levels.append(pa)
    if not premise or not tests:
        return Judgement(f"no (n, Pa) at both σ={small:g} and σ={large:g}", NOT_TESTABLE)
    parts = run_tests(tests)
    at = {pa: [p for p, level in zip(parts, levels, strict=True) if level == pa] for pa in dict.fromkeys(levels)}
    by_pa = {pa: verdicts.all_of(p.verdict for p in found) for pa, found in at.items()}
    accuracy = f"accuracy σ={large:g} vs σ={small:g} on the same {images} images: " + "; ".join(
        text for _, text in premise)
    distortion = f"{kind} (pooled over n), verdict per Pa: " + "; ".join(
        f"Pa={pa:g} {by_pa[pa]}: " + ", ".join(f"{p.which.split(',')[0]} ×{p.interval}" for p in found)
        for pa, found in at.items())
    measured = f"{accuracy}; {distortion}; {family(parts)}; {fig.sample()}"
    found = {cost for cost, _ in premise}
    if found == {"cost"}:
        worst = worst_part(parts)
        return Judgement(measured, verdicts.all_of(by_pa.values()), headline=worst.interval,
                         statistic=worst.statistic)
    if "gain" in found:
        return Judgement(f"premise false, the larger σ is significantly more accurate at some n: {measured}",
                         NOT_TESTABLE)
    return Judgement(f"premise not established, the larger σ is not significantly less accurate at every n: "
                     f"{measured}", UNDECIDED)


def judge_larger_sigma(grid: AttackGrid) -> Judgement:
    """Claim 4 (ICASSP 2022, section 4, Fig. 5): a larger sigma costs accuracy without adding robustness.

    Between the smallest and the largest sigma of the smoothed standard model. The premise, "costs accuracy": at
    every n, the larger sigma is less accurate on the same images by an exact one-sided McNemar test at
    :data:`~rs_repro.claims.kernel.SIGNIFICANCE` (``correct_images`` of the first configuration of each sigma at
    that n: the accuracy of g_{sigma,n} does not depend on P_a). Without it the claim is undecided (no
    significant cost at some n) or not testable (a significant gain), with the reason. With it, per P_a and per
    attack, the ratio of median distortions (largest over smallest sigma, pooled over n) below
    :data:`~rs_repro.claims.kernel.MAX_GAIN`, Bonferroni over every (attack, P_a): the verdict at a P_a holds
    when all its attacks' intervals are below, does not hold when one is above, undecided otherwise; the claim
    holds when it holds at every P_a and does not hold when it fails at one.
    """
    return _on_both_protocols(grid, 4, _larger_sigma)


def _randtrain(fig: Protocol) -> Judgement:
    """Claim 5's rule on one protocol (:func:`judge_randtrain`)."""
    rand, standard = fig.levels("sigma", model="randtrain"), fig.levels("sigma", model="standard")
    undefended = fig.find(model="standard", sigma=None, attack=RAYS)
    rays = fig.columns(model="randtrain", sigma=rand[-1], attack=RAYS) if rand else []
    if not rays or not standard or undefended is None:
        return Judgement(f"needs {RAYS} against RandTrain under smoothing and the undefended model, and the "
                         "standard model under smoothing", NOT_TESTABLE)
    change = {"model": ("randtrain", "standard"), "sigma": (rand[-1], standard[-1])}
    matched = fig.pairs(change)
    if not matched[0]:
        return Judgement(f"no (n, Pa) of RandTrain σ={rand[-1]:g} on the standard model at σ={standard[-1]:g}",
                         NOT_TESTABLE)
    classifiers = {(fig.grid.configurations[j].target, fig.grid.configurations[k].target):
                   (fig.grid.configurations[j], fig.grid.configurations[k]) for j, k in zip(*matched, strict=True)}
    accuracy = [Test("accuracy difference RandTrain − standard", label(a), partial(_accuracy_difference, a, b),
                     (-SAME_ACCURACY, SAME_ACCURACY)) for a, b in classifiers.values()]
    ratios = [fig.test("median distortion ratio RandTrain / standard", attack, median_ratio, paired,
                       (1 - SAME_DISTORTION, 1 + SAME_DISTORTION))
              for attack in fig.attacks if attack != RAYS and (paired := fig.pairs(change, attack=attack))[0]]
    rays_test = fig.test("median paired difference RandTrain − undefended", RAYS, median_difference,
                         (rays, [undefended] * len(rays)), 0, above=False)
    parts = run_tests([*ratios, rays_test, *accuracy])
    ratio_parts, rays_part, accuracy_parts = parts[:len(ratios)], parts[len(ratios)], parts[len(ratios) + 1:]
    texts = ["accuracy difference " + ", ".join(f"{p.which} {p.interval}" for p in accuracy_parts)]
    texts += [f"{p.which} median distortion ratio ×{p.interval}" for p in ratio_parts]
    texts.append(f"{RAYS} median paired difference RandTrain − undefended {rays_part.interval}")
    return decided(f"RandTrain σ={rand[-1]:g} against the standard model at σ={standard[-1]:g}: " + "; ".join(texts)
                   + f"; {fig.sample()}", parts)


def judge_randtrain(grid: AttackGrid) -> Judgement:
    """Claim 5 (ICASSP 2022, section 4, Fig. 5): RandTrain under smoothing behaves like the standard model
    under smoothing at the largest sigma, and against RayS it is less robust than the undefended model.

    RandTrain (at its largest sigma) is paired with the standard model at its largest sigma on the same n and
    P_a. Holds when every interval (Bonferroni over all of them) is inside its band: the clean accuracy
    difference (from Clopper-Pearson intervals) within :data:`~rs_repro.claims.kernel.SAME_ACCURACY`, per attack
    other than RayS the ratio of median distortions RandTrain / standard (pooled over the pairs) within 1 ±
    :data:`~rs_repro.claims.kernel.SAME_DISTORTION`, and for RayS the median paired difference RandTrain -
    undefended below 0; does not hold when one interval is wholly outside; undecided otherwise.
    """
    return _on_both_protocols(grid, 5, _randtrain)


def _direction(interval: Interval, high: float, low: float) -> str:
    """The sign of claim 6's ratio at one n, in words: which level P_a gives the larger distortions."""
    if interval.lower > 1:
        return f"Pa={high:g} gives larger distortions than Pa={low:g}"
    if interval.upper < 1:
        return f"Pa={high:g} gives smaller distortions than Pa={low:g}"
    return "no sign"


def _pa(fig: Protocol) -> Judgement:
    """Claim 6's rule on one protocol (:func:`judge_pa`)."""
    pas, ns = fig.levels("pa", model="standard"), fig.levels("n", model="standard")
    if len(pas) < 2:
        return Judgement("one level Pa only", NOT_TESTABLE)
    low, high = pas[0], pas[-1]
    by_n = {n: pair for n in ns if (pair := fig.pairs({"pa": (high, low)}, model="standard", n=n))[0]}
    if len(by_n) < 2:
        return Judgement(f"needs both levels Pa={low:g} and Pa={high:g} at two n or more", NOT_TESTABLE)
    first = f"|log ratio| at n={next(iter(by_n))} minus the largest other"
    parts = run_tests([*(fig.test(f"median distortion ratio Pa={high:g} / Pa={low:g}", f"n={n}", median_ratio, pair,
                                  (1 / PA_EFFECT, PA_EFFECT)) for n, pair in by_n.items()),
                       fig.test(first, "", _first_effect_above_others,
                                [group for pair in by_n.values() for group in pair], 0)])
    ratios = ", ".join(f"×{p.interval} at {p.which} ({_direction(p.interval, high, low)})" for p in parts[:-1])
    return decided(f"median distortion Pa={high:g} / Pa={low:g} (pooled over σ, attacks): {ratios}; {first} "
                   f"{parts[-1].interval}; {fig.sample()}", parts)


def judge_pa(grid: AttackGrid) -> Judgement:
    """Claim 6 (ICASSP 2022, section 4, Fig. 5): the level P_a matters little, and mostly for small n.

    Per n, the ratio of the median distortion at the largest P_a over the smallest (paired configurations,
    pooled over sigma and attacks) inside the band (1 / :data:`~rs_repro.claims.kernel.PA_EFFECT`,
    :data:`~rs_repro.claims.kernel.PA_EFFECT`), its sign said in the measured text; and the size (absolute log
    ratio) at the smallest n minus the largest size at another n above 0. Bonferroni over all the intervals.
    Holds when every interval is on its side (inside the band, above 0), does not hold when one is wholly on the
    other side, undecided otherwise.
    """
    return _on_both_protocols(grid, 6, _pa)


def _rs_beats_advtrain(fig: Protocol) -> Judgement:
    """Claim 10's rule on one protocol (:func:`judge_rs_beats_advtrain`)."""
    sigmas = fig.levels("sigma", model="standard")
    smallest = sigmas[0] if sigmas else None
    columns = {a: (fig.columns(smoothed=True, model="standard", sigma=smallest, attack=a),
                   fig.find(model="advtrain", sigma=None, attack=a)) for a in ADVTRAIN_ATTACKS}
    if any(not rs or adv is None for rs, adv in columns.values()):
        return Judgement(f"needs {' and '.join(ADVTRAIN_ATTACKS)} against AdvTrain and the smoothed standard model",
                         NOT_TESTABLE)
    kind = f"median paired difference RS σ={smallest:g} − AdvTrain"
    parts = run_tests([fig.test(kind, attack, median_difference, (rs, [adv] * len(rs)), 0)
                       for attack, (rs, adv) in columns.items()])
    return decided(f"median paired difference RS σ={smallest:g} (pooled over n, Pa) − AdvTrain: "
                   + "; ".join(f"{p.which} {p.interval}" for p in parts) + f"; {fig.sample()}", parts)


def judge_rs_beats_advtrain(grid: AttackGrid) -> Judgement:
    """Claim 10 (ICASSP 2022, Fig. 5): smoothing at the smallest sigma beats adversarial training against HSJA
    and SurFree.

    Per attack, the per-image paired differences of the distortion against the smoothed standard model at
    the smallest sigma (pooled over n and P_a) minus that against AdvTrain; statistic: their median. Holds if
    both intervals (Bonferroni over the two) are above 0, does not hold if one is below, undecided otherwise.
    """
    return _on_both_protocols(grid, 10, _rs_beats_advtrain)


def push_in_sigma(push: BoundaryPush, sigma: float | None = None, *, confidence: float = CONFIDENCE) -> Interval:
    """How far smoothing pushes the boundary (claim 7): the median crossing of the boundary of g_sigma past
    the white-box x_a over the attacked images, in units of sigma.

    Parameters
    ----------
    push : rs_repro.report.measurements.BoundaryPush
        A Fig. 1 record.
    sigma : float or None
        The noise level (one of ``push.crossings``); ``None``: the chapter's main one.
    confidence : float
        Of the interval.

    Returns
    -------
    rs_repro.report.verdicts.Interval
        The median with its order-statistic interval (:func:`rs_repro.report.verdicts.median_interval`, the dual of
        a two-sided sign test), a crossing censored outside the scanned range counted at -inf (before it)
        or inf (past it).
    """
    found = push.crossings[0] if sigma is None else push.crossing(sigma)
    return verdicts.median_interval(np.asarray(found.distances) / found.sigma, confidence)


def _crossing_text(c: Crossing, interval: Interval) -> str:
    """Claim 7's measured text at one noise level."""
    d = np.asarray(c.distances)
    return (f"σ={c.sigma:g}: median {interval} σ past x_a, beyond x_a on {int(np.sum(d > 0))} of {len(d)} images "
            f"({int(np.sum(d == -np.inf))} crossed before the scanned range, {int(np.sum(d == np.inf))} past it)")


def judge_boundary_push(push: BoundaryPush) -> Judgement:
    """Claim 7 (ICASSP 2022, Fig. 1, eq. 3): smoothing pushes the boundary well beyond x_a, and the
    transition of P[g_{sigma,n}(x) != y] from 0 to 1 is wider for small n.

    At every noise level scanned, the median crossing of the boundary of g_sigma past x_a in units of sigma
    (:func:`push_in_sigma`) above :data:`~rs_repro.claims.kernel.MIN_PUSH`; and the per-image paired difference
    of the width of the transition (from the smallest to the largest recorded P_a) at the smallest n minus the
    largest, its median above 0 (images where the smaller level was not located at both n left out; a transition
    not completed inside the scan is infinitely wide). Order-statistic intervals (exact, distribution-free),
    Bonferroni over all of them. Holds if every interval is on its side, does not hold if one is wholly on the
    other side, undecided otherwise (also when no width was located).
    """
    ns, low, high = sorted(push.widths), min(push.pas), max(push.pas)
    if low == high or len(ns) < 2 or not push.crossings:
        return Judgement("needs two levels P_a, two n and a scanned noise level", NOT_TESTABLE)
    tests = [Test("median crossing past x_a / σ", f"σ={c.sigma:g}", partial(push_in_sigma, push, c.sigma), MIN_PUSH)
             for c in push.crossings]
    paired = [(a, b) for a, b in zip(push.widths[ns[0]], push.widths[ns[-1]], strict=True)
              if a is not None and b is not None]
    difference = verdicts.paired_difference(*zip(*paired, strict=True)) if paired else np.empty(0)
    kind = f"median paired difference of the width P {low:g} → {high:g}, n={ns[0]} − n={ns[-1]}"
    if paired:
        tests.append(Test(kind, "", partial(verdicts.median_interval, difference), 0))
    parts = run_tests(tests)
    texts = [_crossing_text(c, p.interval) for c, p in zip(push.crossings, parts[:len(push.crossings)], strict=True)]
    texts.append(f"{kind} {parts[-1].interval} on the {len(paired)} images located at both n, wider at n={ns[0]} "
                 f"on {int(np.sum(difference > 0))}" if paired else f"no image with the P {low:g} → {high:g} "
                 "transition located at both n")
    return decided("; ".join(texts) + f"; {push.num_images} images, a crossing outside the scanned range kept "
                   "at -inf or inf", parts, *([] if paired else [UNDECIDED]))


def judge_bisection_spread(spread: BisectionSpread) -> Judgement:
    """Claim 8 (ICASSP 2022, Fig. 3): smoothing disturbs the binary search, and its spread shrinks as n grows.

    The per-segment paired difference of the spread at the smallest n minus the largest (the segments are the
    same for every n); statistic: its median over segments, with its exact order-statistic interval (the dual
    of the sign test, :func:`rs_repro.report.verdicts.median_interval`: coverage at least its confidence whatever the
    law of the differences). Holds if the interval is above 0, does not hold if below, undecided otherwise;
    not testable with too few segments for a finite interval (6 at 95%).
    """
    ns = sorted(spread.per_segment)
    if len(ns) < 2:
        return Judgement("one n only", NOT_TESTABLE)
    difference = verdicts.paired_difference(spread.per_segment[ns[0]], spread.per_segment[ns[-1]])
    (part,) = run_tests([Test(f"median paired difference of spread n={ns[0]} − n={ns[-1]}", "",
                              partial(verdicts.median_interval, difference), 0)])
    segments = len(difference)
    if np.isinf(part.interval.lower) and np.isinf(part.interval.upper):
        return Judgement(f"{segments} segments: too few for a {percent(CONFIDENCE)} order-statistic interval",
                         NOT_TESTABLE)
    spreads = ", ".join(f"{spread.spread[n]:.3f} at n={n}" for n in ns)
    return decided(f"median over {segments} segments of the spread at n={ns[0]} minus n={ns[-1]}: {part.interval} "
                   f"(order-statistic, exact), positive on {int(np.sum(difference > 0))} of {segments} (mean "
                   f"spread {spreads})", [part])


def judge_normal_agreement(agreement: NormalAgreement) -> Judgement:
    """Claim 9 (ICASSP 2022, section 3.5): normal-vector estimates at the boundary with and without smoothing
    correlate well when the estimation noise exceeds sigma; HSJA sometimes fails because every probe gets the
    same label.

    At every probe radius delta above sigma (the paper's condition: the estimate's noise variance larger than
    sigma^2), the mean cosine between the estimates with and without RS (its bootstrap interval over images)
    above :data:`~rs_repro.claims.kernel.WELL_CORRELATED`; and the rate of HSJA gradient steps whose probes all
    got one label (pooled over images; Clopper-Pearson) above 0. Bonferroni over all the intervals. Holds if
    both, does not hold if a cosine interval is below :data:`~rs_repro.claims.kernel.WELL_CORRELATED`, undecided
    otherwise: no one-label step seen is no refutation of "sometimes".
    """
    few = too_few(len(agreement.hsja_steps), "images")
    if few is not None:
        return few
    if max(agreement.ratios, default=0) <= 1:
        return Judgement("no probe radius above σ", NOT_TESTABLE)
    seed = claim_seed(agreement.seed, 9)
    above = [(ratio, cosine) for ratio, cosine in zip(agreement.ratios, agreement.cosine, strict=True) if ratio > 1]
    steps, one_label = sum(agreement.hsja_steps), sum(agreement.hsja_one_label_steps)
    tests = [Test("mean cosine with / without RS", f"δ/σ = {ratio:g}", partial(verdicts.bootstrap, cosine, seed=seed),
                  WELL_CORRELATED) for ratio, cosine in above]
    rate_test = Test("rate of HSJA steps with one label on every probe", "",
                     partial(verdicts.proportion, one_label, steps), 0)
    parts = run_tests([*tests, rate_test] if steps else tests)  # a rate cannot lie below 0: it holds or is undecided
    others = []
    if steps:
        steps_text = f"HSJA steps with one label on every probe {one_label} of {steps}, {parts[-1].interval}"
    else:
        others.append(UNDECIDED)
        steps_text = "no HSJA gradient step"
    listed = ", ".join(f"{p.which.removeprefix('δ/σ = ')}: {p.interval}" for p in parts[:len(tests)])
    return decided(f"mean cosine with / without RS at δ/σ = {listed}; {steps_text}; "
                   f"{len(agreement.hsja_steps)} images", parts, *others)


def judge_eq5(check: ThresholdCheck) -> Judgement:
    """Claim 11 (ICASSP 2022, eq. 5): the exact probability that a vote is adversarial at the printed threshold;
    holds when it equals P_a (to 1e-6) for every n checked, odd and even. Exact: no sampling, no interval."""
    probability = dict(sorted(check.probability_at_threshold.items()))
    band = (check.pa - EQ5_TOLERANCE, check.pa + EQ5_TOLERANCE)
    text = f"exact (no sampling, no interval), at Pa = {check.pa:g}: " + ", ".join(
        f"{verdicts.shown(p, band)} (n={n})" for n, p in probability.items())
    return Judgement(text, HOLDS if all(abs(p - check.pa) <= EQ5_TOLERANCE for p in probability.values()) else FAILS)


#: The paper's headline claims (``paper-notes.md`` section 4), each with its judge.
CLAIMS: tuple[Claim, ...] = (
    Claim(1, "Black-box attacks need distortions far larger than the certified radius.",
          f"at least {DISTORTION_OVER_RADIUS} times larger", "fig5_attacks",
          f"not testable if every attack's median distortion on the undefended model is within ×{CONVERGED:g} of "
          "the white-box minimal one (the attacks converged, so the attack inefficiency behind the paper's factor "
          "cannot appear); otherwise, for each smoothed classifier and each attack that did not converge, median "
          "confirmed distortion / median certified radius: holds if every interval is above "
          f"{DISTORTION_OVER_RADIUS}, does not hold if one is below, else undecided (a median radius of 0 gives no "
          f"ratio: left out); {BONFERRONI}; {WORST}",
          judge_certificate_ratio),
    Claim(2, "Fewer Monte Carlo samples n give larger distortions, for every attack.",
          "SurFree, σ = 0.05: 41 → 37 → 34 for n = 10, 50, 100", "fig5_attacks",
          "per attack, median paired difference of distortion at the smallest n minus the largest (smoothed "
          "standard model, pooled over σ and P_a): holds if every interval is above 0, does not hold if one is "
          f"below, else undecided; {BONFERRONI}; {WORST}, of the attacks", judge_fewer_samples),
    Claim(3, "RayS is the attack least affected by smoothing.",
          "RayS ≈ 15 with RS against 13.4 without; HSJA ≈ 47 against 17.4", "fig5_attacks",
          "per attack, factor = median distortion with RS (smoothed standard model, pooled) / without; RayS's factor "
          f"minus the smallest other: holds if its {percent(CONFIDENCE)} interval is below 0, does not hold if "
          "above, else undecided", judge_rays_least_affected),
    Claim(4, "A larger σ costs accuracy without adding robustness.",
          "σ = 0.15 costs 12% accuracy (σ = 0.05: 3%); HSJA ≈ 36 against ≈ 48", "fig5_attacks",
          "largest against smallest σ. Premise, \"costs accuracy\": at every n the larger σ is less accurate on the "
          f"same images (exact one-sided McNemar test, p < {SIGNIFICANCE:g}; the accuracy of g_{{σ,n}} does not "
          "depend on P_a); without it the claim is undecided (no significant cost) or not testable (a significant "
          "gain), whatever the distortions. With it, per P_a and attack, the ratio of median distortions (pooled "
          f"over n) below {MAX_GAIN:g}; the verdict at a P_a holds if all its intervals are below, does not hold if "
          "one is above, else undecided; the claim holds if it holds at every P_a, does not hold if it fails at "
          f"one, else undecided; {BONFERRONI}; {WORST}", judge_larger_sigma),
    Claim(5, "Noise training (RandTrain) with RS behaves like the standard model with RS at the large σ, "
             "and against RayS it is less robust than the undefended model.",
          "accuracy 0.64 vs 0.62; RayS ≈ 11 against 13.4 undefended", "fig5_attacks",
          "against the standard model at its largest σ with RandTrain's n and P_a: accuracy difference "
          f"(Clopper-Pearson) within ±{SAME_ACCURACY:g}, ratio of median distortions within "
          f"{1 - SAME_DISTORTION:g}-{1 + SAME_DISTORTION:g} for the attacks other than RayS, and for RayS the "
          "median paired difference RandTrain − undefended below 0: holds if every interval is inside, does not "
          f"hold if one is wholly outside, else undecided; {BONFERRONI}; {WORST}, the distortion ratios first, "
          "then RayS's difference, then the accuracies", judge_randtrain),
    Claim(6, "The level P_a matters little, and mostly for small n.",
          "80% against 50%: slightly larger distortions, mostly at n = 10", "fig5_attacks",
          "per n, median distortion at the largest P_a / at the smallest (pooled over σ, attacks) inside "
          f"1/{PA_EFFECT:g}-{PA_EFFECT:g} (either sign is little; the sign is said beside), and the size "
          "|log ratio| at the smallest n minus the largest at another n above 0: holds if every interval is on "
          f"its side, does not hold if one is wholly on the other side, else undecided; {BONFERRONI}; {WORST}, "
          "the ratios per n first", judge_pa),
    Claim(7, "Smoothing pushes the boundary well beyond the base classifier's, and the transition from 0 to 1 of "
             "P[g_{σ,n}(x) ≠ y] is wider for small n.",
          "boundary of g_σ crossed about 4.0 past x_a on ImageNet", "fig1_adversarial_probability",
          f"at every σ scanned, the median crossing past x_a, in units of σ, above {MIN_PUSH:g} σ (larger than "
          "the shift the vote alone gives the level P_a = 0.8 past a flat boundary, eq. 6: 0.45 σ at n = 5); and "
          "the median per-image paired difference of the width of the transition from the smallest to the "
          "largest P_a, smallest n minus largest, above 0 (a crossing or transition outside the scanned range "
          "kept at ±inf): order-statistic intervals (exact, the dual of the sign test); holds if every interval "
          f"is on its side, does not hold if one is on the other side, else undecided; {BONFERRONI}; {WORST}",
          judge_boundary_push),
    Claim(8, "Smoothing disturbs the binary search; its spread shrinks as n grows.",
          "peak 0.13 (n = 10), 0.21 (n = 50), 0.28 (n = 100)", "fig3_binary_search",
          "median over segments of the paired difference of spread at the smallest n minus the largest, with its "
          f"exact {percent(CONFIDENCE)} order-statistic interval (the dual of the sign test over segments): holds "
          "if the interval is above 0, does not hold if below, else undecided", judge_bisection_spread),
    Claim(9, "Normal vectors estimated at the boundary with and without smoothing correlate well when the "
             "estimation noise exceeds σ; HSJA sometimes crashes when every probe gets the same label.",
          "stated, no number", "normal_vectors",
          f"mean cosine between the estimates with and without RS above {WELL_CORRELATED:g} at every probe radius "
          "above σ, and rate of HSJA steps with one label on every probe (Clopper-Pearson) above 0: holds if both; "
          f"a cosine interval below {WELL_CORRELATED:g}: does not hold; else undecided (no one-label step seen "
          f"does not refute \"sometimes\"); {BONFERRONI}; {WORST}, the cosines first", judge_normal_agreement),
    Claim(10, "Smoothing at the small σ beats adversarial training in practice against HSJA and SurFree.",
          "HSJA ≈ 47 vs 22.8; SurFree ≈ 34-41 vs 21.2 (accuracy 0.73 vs 0.56)", "fig5_attacks",
          "per attack, median paired difference of distortion against RS at the smallest σ (pooled over n, P_a) "
          "minus against AdvTrain: holds if both intervals are above 0, does not hold if one is below, else "
          f"undecided; {BONFERRONI}; {WORST}, of the attacks", judge_rs_beats_advtrain),
    Claim(11, "Eq. (5) gives the threshold on π_0(x_a) above which a vote is adversarial with probability "
              "P_a.", "eq. (5), with ñ = 1 + ⌊n/2⌋, for every n", "theory",
          "exact computation (no sampling): the probability at the printed threshold equals P_a for every n "
          "checked: holds, else does not hold", judge_eq5),
)
