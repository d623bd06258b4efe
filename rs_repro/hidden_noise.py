"""Noise inside the network: the random classifier of Pinot et al. with noise at the first affine layer.

Pinot, Meunier, Araujo, Kashima, Yger, Gouy-Pailler and Atif, *Theoretical evidence for adversarial
robustness through randomization* (NeurIPS 2019), randomize a network by injecting noise from an
exponential family (Gaussian, Laplace) into it. Here the noise is added, i.i.d. per coordinate, to the
output of the base model's first affine layer (the first :class:`torch.nn.Linear` or
:class:`torch.nn.Conv2d` in ``model.modules()`` order: the first hidden layer of the digits, MNIST and
Fashion-MNIST models of :func:`rs_repro.models.architecture`, the stem convolution of EfficientNet-Lite0,
:func:`rs_repro.models.pretrained`), the input itself being noiseless:

    f_noisy(x) = argmax  h(A x + b + scale * E),   E i.i.d., E[E] = 0, Var E = 1,

A x + b being the first affine layer (after the model's :class:`~rs_repro.models.Normalize`) and h the rest
of the network. The classifier the attacks meet is, as for input noise, the majority vote of n such
micro-decisions (:meth:`~rs_repro.smoothing.Smooth.vote`).

:class:`HiddenNoise` is a :class:`~rs_repro.smoothing.Smooth` whose one noise-drawing method is replaced,
so every consumer of a smoothed classifier (``counts``, ``vote``, ``predict``,
:func:`rs_repro.attacks.oracle.smoothed_oracle`, :func:`rs_repro.attacks.verification.push_to_level` and
``verify``) works on it unchanged. :func:`match_accuracy` finds the noise scale at which its vote has a
given accuracy, to compare it with input-noise smoothing at equal clean accuracy.

No certificate: Cohen et al.'s radius R = sigma Phi^{-1}(pA) (ICASSP 2022, eq. (2)) holds for Gaussian
noise added to the input, and no theorem turns hidden-layer vote counts into an l2 radius in pixel space
(Pinot et al.'s guarantees bound a divergence between the output distributions at x and at a perturbed x,
through the layers before the noise; they give no radius computed from vote counts). :meth:`HiddenNoise.certify` and
:meth:`HiddenNoise.certify_batch` therefore raise instead of returning a number that would read as one.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from rs_repro import checks, seeds
from rs_repro.smoothing import Smooth

__all__ = ["LAWS", "HiddenNoise", "match_accuracy"]

#: The noise laws of :class:`HiddenNoise` (Pinot et al. 2019: exponential families), both with standard
#: deviation ``scale`` per coordinate: ``"gaussian"`` N(0, scale^2), ``"laplace"`` Laplace(0, b) with
#: b = scale / sqrt(2).
LAWS: tuple[str, ...] = ("gaussian", "laplace")


def _first_affine(model: object) -> tuple[str, nn.Module]:
    """The name and module of the first :class:`~torch.nn.Linear` or :class:`~torch.nn.Conv2d` of ``model``
    (``model.modules()`` order)."""
    accepted = "a torch.nn.Module with an nn.Linear or nn.Conv2d layer (where the noise is added)"
    if not isinstance(model, nn.Module):
        # A ValueError, not a TypeError: the project's convention for every bad parameter (rs_repro.checks).
        raise ValueError(f"base_classifier must be {accepted}, got {type(model).__name__}")  # noqa: TRY004
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            return name, module
    raise ValueError(f"base_classifier must be {accepted}, got a {type(model).__name__} without one")


class HiddenNoise(Smooth):
    """The majority vote of a base model with i.i.d. noise on its first affine layer (Pinot et al. 2019).

    Parameters
    ----------
    base_classifier : torch.nn.Module
        f: maps inputs [m, C, H, W] in [0, 1] pixel space to logits [m, num_classes]. Its first
        :class:`~torch.nn.Linear` or :class:`~torch.nn.Conv2d` in ``modules()`` order is the layer whose
        output [m, features] or [m, channels, H', W'] gets the noise, every time it is called in a forward
        pass. ``eval()`` mode is the caller's business, as for :class:`~rs_repro.smoothing.Smooth`.
    num_classes : int
        Number of classes K >= 2.
    scale : float
        Standard deviation of each noise coordinate (> 0), in the units of the layer's output, for both
        laws. Also stored as ``sigma``, so code that reads ``smooth.sigma`` keeps working; it is not a pixel
        distance.
    law : str, default "gaussian"
        One of :data:`LAWS`: ``"gaussian"`` (N(0, scale^2)) or ``"laplace"`` (Laplace(0, scale / sqrt(2))).
    seed : int, default 0
        Seed of the object's own generators, as for :class:`~rs_repro.smoothing.Smooth`.

    Attributes
    ----------
    scale, sigma : float
        The noise's standard deviation.
    law : str
        The noise law.
    layer_name : str
        Name of the noisy layer in ``base_classifier.named_modules()`` (e.g. ``"2"`` for the digits model,
        ``"1._conv_stem"`` for EfficientNet-Lite0).

    Notes
    -----
    Only :meth:`~rs_repro.smoothing.Smooth.counts_unchecked` differs from :class:`~rs_repro.smoothing.Smooth`:
    each of the n copies of each input is given to the base model without noise, and a forward hook on the
    noisy layer, registered for the duration of the call and removed afterwards, adds to the layer's output
    noise drawn from the call's generator, a chunk of ``batch_size`` copies at a time (so each row, thus each
    copy, gets its own noise). The base model alone stays
    deterministic and carries no hook between calls. Given the same generator state, inputs and
    ``batch_size``, the counts are identical.

    ``vote`` and ``predict`` keep their meaning (PREDICT's test bounds the probability of returning another
    class than the most probable one, for any random classifier). ``certify`` and ``certify_batch`` raise:
    no certificate theory covers this classifier (see the module's docstring).

    Examples
    --------
    >>> noisy = HiddenNoise(model.eval(), num_classes=10, scale=0.5, law="laplace", seed=1)  # doctest: +SKIP
    >>> noisy.vote(xs, n=100)  # the majority of 100 noisy forward passes per input  # doctest: +SKIP
    """

    def __init__(
        self,
        base_classifier: nn.Module,
        num_classes: int,
        scale: float,
        law: str = "gaussian",
        seed: int = 0,
    ) -> None:
        scale = checks.real("scale", scale, 0)
        self.law: str = checks.choice("law", law, LAWS)
        self.layer_name, self._layer = _first_affine(base_classifier)
        super().__init__(base_classifier, num_classes, scale, seed)
        self.scale: float = scale
        self._sizes: dict[tuple[object, ...], int] = {}

    def __repr__(self) -> str:
        return (f"HiddenNoise(num_classes={self.num_classes}, law={self.law!r}, scale={self.scale}, "
                f"seed={self.seed}, layer={self.layer_name!r})")

    # -- noise ----------------------------------------------------------------------------------------

    def fill_noise(self, out: torch.Tensor, generator: torch.Generator) -> None:
        """Fill ``out`` in place with i.i.d. noise of standard deviation ``scale`` from ``generator``.

        Laplace(0, b), b = scale / sqrt(2), by the inverse of its CDF: with u uniform on [-1, 1), ``|u|`` is uniform
        on [0, 1] and its sign independent of it, so ``b sign(u) (-log(1 - |u|))`` is Laplace(0, b) (one uniform
        draw, several times faster than two exponential ones; torch.distributions take no generator). ``1 - |u|``
        is kept at or above 2^-24, the spacing of float32 uniforms, so that no draw is infinite.
        """
        if self.law == "gaussian":
            out.normal_(0.0, self.scale, generator=generator)
            return
        u = out.uniform_(-1.0, 1.0, generator=generator)
        sign = u.sign()
        u.abs_().clamp_(max=1.0 - 2.0 ** -24).neg_().log1p_().mul_(-self.scale / math.sqrt(2.0)).mul_(sign)

    def noise_size(self, xs: torch.Tensor) -> int:
        """Numbers in one noise vector: the noisy layer's output for one input like ``xs[0]`` (a Linear layer's
        ``out_features``; a convolution's output shape, from the layer alone on ``xs[:1]``, not counted as a
        forward pass of the model)."""
        if isinstance(self._layer, nn.Linear):
            return self._layer.out_features
        key = (tuple(xs.shape[1:]), xs.dtype, xs.device)
        if key not in self._sizes:  # once per input shape: a counts call would otherwise run the layer again
            with torch.inference_mode():
                self._sizes[key] = self._layer(xs[:1])[0].numel()
        return self._sizes[key]

    def _top_with_noise(self, copies: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The top class of each of ``copies`` [k, C, H, W] with row i of ``noise`` [k, e] added to the noisy
        layer's output of copy i (:meth:`~rs_repro.smoothing.Smooth.top_classes`, whose slices the forward hook
        follows in order), int64 [k]. Raises when the forward pass does not call the noisy layer."""
        done = [0]

        def add_noise(module: nn.Module, inputs: tuple[object, ...], output: torch.Tensor) -> torch.Tensor:
            rows = len(output)
            output.add_(noise[done[0]:done[0] + rows].view(output.shape))  # a fresh tensor of the layer: in place
            done[0] += rows
            return output

        handle = self._layer.register_forward_hook(add_noise)
        try:
            top = self.top_classes(copies)
        finally:
            handle.remove()
        if done[0] != len(copies):
            raise ValueError(f"base_classifier must call its first affine layer {self.layer_name!r} "
                             f"({type(self._layer).__name__}) once per forward pass, where the noise is added; "
                             f"it took the noise of {done[0]} of {len(copies)} inputs")
        return top

    def micro_decisions(self, flat: torch.Tensor, shape: torch.Size, rows: np.ndarray, draws: np.ndarray,
                        noise: torch.Tensor) -> torch.Tensor:
        """:meth:`~rs_repro.smoothing.Smooth.micro_decisions` with the noise vectors ``noise`` [k, e] added to
        the noisy layer's output of the k copies (given to the model without noise)."""
        copies = flat.index_select(0, torch.from_numpy(np.repeat(rows, draws)).to(flat.device))
        return self._top_with_noise(copies.view(len(copies), *shape), noise)

    # -- Monte Carlo vote counts ----------------------------------------------------------------------

    def counts_unchecked(self, xs: torch.Tensor, n: int, batch_size: int, gen: torch.Generator) -> torch.Tensor:
        """:meth:`~rs_repro.smoothing.Smooth.counts` without validation, the noise at the first affine layer.

        The B * n copies are the rows of a virtual [B * n, d] matrix (row r is image r // n) cut into
        consecutive chunks of ``batch_size`` rows, as in :class:`~rs_repro.smoothing.Smooth`. Per chunk: draw
        the chunk's noise [rows, e] from ``gen`` (:meth:`fill_noise`), copy the images into a reused buffer,
        forward with the noise added to the first affine layer's output, take the top class of each row's
        logits (its micro-decision; the first on ties of logits), one ``bincount`` of
        ``image * num_classes + label``.

        Returns
        -------
        torch.Tensor, shape [B, num_classes], int64, on the device of ``xs``; rows sum to n.
        """
        num_images, num_classes = xs.shape[0], self.num_classes
        flat = xs.detach().reshape(num_images, -1)
        total = num_images * n
        chunk = min(batch_size, total)
        buffer, _ = self._buffers(chunk, flat, n)
        size = self.noise_size(xs)
        counts = None
        with torch.inference_mode():
            for start in range(0, total, chunk):
                stop = min(start + chunk, total)
                noise = torch.empty((stop - start, size), dtype=flat.dtype, device=flat.device)
                self.fill_noise(noise, gen)
                image = torch.arange(start, stop, device=flat.device).div_(n, rounding_mode="floor")
                copies = torch.index_select(flat, 0, image, out=buffer[: stop - start])
                labels = self._top_with_noise(copies.view(stop - start, *xs.shape[1:]), noise)
                key = labels.add_(image.to(labels.device).mul_(num_classes))
                tally = torch.bincount(key, minlength=num_images * num_classes)
                counts = tally if counts is None else counts.add_(tally)
        return counts.view(num_images, num_classes)

    # -- no certificate ------------------------------------------------------------------------------

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int = 1000, *,
                generator: torch.Generator | None = None) -> tuple[int, float]:
        """Not available: no certified radius exists for noise inside the network.

        Raises
        ------
        ValueError
            Always. Cohen et al.'s radius sigma Phi^{-1}(pA_lower) assumes Gaussian noise on the input; applied to
            hidden-noise counts it would be a number, not a certificate. Use :meth:`~rs_repro.smoothing.Smooth.vote` or :meth:`~rs_repro.smoothing.Smooth.predict`.
        """
        raise self._no_certificate("certify")

    def certify_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, batch_size: int = 1000, *,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Not available: no certified radius exists for noise inside the network (see :meth:`certify`).

        Raises
        ------
        ValueError
            Always.
        """
        raise self._no_certificate("certify_batch")

    def _no_certificate(self, method: str) -> ValueError:
        return ValueError(
            f"HiddenNoise.{method} is not available: no certificate theory covers noise at a hidden layer "
            f"(law={self.law!r}, scale={self.scale} at layer {self.layer_name!r}); Cohen et al.'s radius "
            "sigma * Phi^-1(pA) holds for Gaussian noise on the input only. Use vote() or predict()"
        )


def match_accuracy(
    model: nn.Module,
    num_classes: int,
    x: torch.Tensor,
    y: torch.Tensor,
    target: float,
    *,
    law: str,
    n: int,
    seed: int,
    draws: int = 16,
    low: float = 1e-3,
    high: float = 1e3,
    tolerance: float = 0.0025,
    max_steps: int = 30,
    batch_size: int = 1000,
) -> tuple[float, float]:
    """The noise scale at which the hidden-noise vote has accuracy ``target``, by bisection on log(scale).

    The accuracy at scale s is estimated as a_D(s), the fraction of right votes among D = ``draws``
    independent votes g_{s,n} of :class:`HiddenNoise` ``(model, num_classes, s, law)`` on each of the N images
    (D N votes, ties broken at random as in :meth:`~rs_repro.smoothing.Smooth.vote`). Every evaluation draws
    from a fresh generator ``rs_repro.seeds.generator(seed, "match-accuracy", device=x.device)``: the same
    random numbers at every scale (the noise is s times a fixed draw, the tie-breaking numbers are the same),
    so a_D(s) is a deterministic function of s, the same seed gives the same scale, and re-evaluating at the
    returned scale gives the returned accuracy. It decreases with s as a rule (from the clean accuracy to
    chance); the bisection assumes a_D(low) >= target >= a_D(high) and keeps a bracket [s_lo, s_hi] with
    a_D(s_lo) > target > a_D(s_hi) (Pinot et al. 2019 compare randomized networks at equal accuracy; the
    chapters put hidden-noise models at the clean accuracy of input-noise smoothing).

    With one draw per scale (D = 1) the match is made on that draw: on fresh draws the accuracy at the
    returned scale differs from ``target`` by the sampling error of one vote per image. Averaging D draws
    divides that error by sqrt(D): the standard error of a_D(s) around the expected accuracy a(s) on these
    images is sqrt(sum_i p_i (1 - p_i) / D) / N <= sqrt(a (1 - a) / (D N)), p_i being the probability that
    image i's vote is right and a their mean (Jensen). The default D = 16 puts it below 0.0025, half a gap
    of 0.005, for N = 450 images at a = 0.96 (0.0023); at a = 0.9 it is below 0.0036. Each evaluation
    costs D N n forward passes.

    Parameters
    ----------
    model : torch.nn.Module
        Base classifier, [m, C, H, W] in [0, 1] -> [m, num_classes] logits (see :class:`HiddenNoise`).
    num_classes : int
        K >= 2.
    x : torch.Tensor, shape [N, C, H, W]
        Images in [0, 1], on the device the model runs on.
    y : torch.Tensor, shape [N]
        Their labels.
    target : float
        Accuracy to reach, in [0, 1].
    law : str
        One of :data:`LAWS`.
    n : int
        Micro-decisions per vote (>= 1).
    seed : int
        Seed of every evaluation's generator.
    draws : int, default 16
        D >= 1: independent votes per image in each evaluation of the accuracy (see above).
    low, high : float, default 1e-3 and 1e3
        The bracket of scales, 0 < low < high.
    tolerance : float, default 0.0025
        Accept a scale whose accuracy a_D is within ``tolerance`` of ``target`` (>= 0; a_D moves in steps of
        1 / (D N), so a tolerance below half a step may be out of reach).
    max_steps : int, default 30
        Largest number of bisection steps (evaluations besides the two ends), >= 1.
    batch_size : int, default 1000
        Largest batch given to the model.

    Returns
    -------
    tuple[float, float]
        ``(scale, accuracy)``: the first scale evaluated whose accuracy a_D is within ``tolerance`` of
        ``target``. When none is after ``max_steps`` (a_D(s) jumps over the target), the end of the final
        bracket with the accuracy nearest the target, with a :class:`RuntimeWarning`.

    Raises
    ------
    ValueError
        A bad argument, or ``target`` outside [a_D(high) - tolerance, a_D(low) + tolerance] (the message
        gives both accuracies: widen the bracket, or the target is out of reach).
    """
    num_classes = checks.integer("num_classes", num_classes, 2)
    x = checks.images("x", x, 4, "[N, C, H, W]")
    if not isinstance(y, torch.Tensor) or y.shape != (len(x),):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise checks.rejected("y", shape, f"a tensor of one label per image, shape ({len(x)},)")
    target = checks.real("target", target, 0, 1, include_low=True, include_high=True)
    law = checks.choice("law", law, LAWS)
    n = checks.integer("n", n, 1)
    seed = checks.integer("seed", seed)
    draws = checks.integer("draws", draws, 1)
    low = checks.real("low", low, 0)
    high = checks.real("high", high, low)
    tolerance = checks.real("tolerance", tolerance, 0, include_low=True)
    max_steps = checks.integer("max_steps", max_steps, 1)
    batch_size = checks.integer("batch_size", batch_size, 1)
    copies = x.repeat(draws, 1, 1, 1)  # [D N, C, H, W]: draw d of image i is row d N + i
    labels = y.to(x.device).repeat(draws)  # [D N]

    def accuracy(scale: float) -> float:
        noisy = HiddenNoise(model, num_classes, scale, law, seed=seed)
        gen = seeds.generator(seed, "match-accuracy", device=x.device)
        return float((noisy.vote(copies, n, batch_size, generator=gen) == labels).double().mean())

    a_low, a_high = accuracy(low), accuracy(high)
    for scale, acc in ((low, a_low), (high, a_high)):
        if abs(acc - target) <= tolerance:
            return scale, acc
    if not a_high < target < a_low:
        raise ValueError(
            f"target must be within the accuracies of the bracket [low, high] = [{low:g}, {high:g}] "
            f"({a_low:.4g} at low, {a_high:.4g} at high, tolerance {tolerance:g}), got {target!r}; widen the bracket"
            " or choose a reachable target"
        )
    lo, hi = math.log(low), math.log(high)
    for _ in range(max_steps):
        middle = (lo + hi) / 2
        scale = math.exp(middle)
        acc = accuracy(scale)
        if abs(acc - target) <= tolerance:
            return scale, acc
        if acc > target:
            lo, a_low = middle, acc
        else:
            hi, a_high = middle, acc
    best = (math.exp(lo), a_low) if abs(a_low - target) <= abs(a_high - target) else (math.exp(hi), a_high)
    warnings.warn(
        f"match_accuracy: no scale within tolerance {tolerance:g} of target {target:g} after {max_steps} steps; "
        f"the accuracy jumps from {a_low:.4g} at scale {math.exp(lo):.6g} to {a_high:.4g} at {math.exp(hi):.6g}; "
        f"returning scale {best[0]:.6g} (accuracy {best[1]:.4g})",
        RuntimeWarning,
        stacklevel=2,
    )
    return best
