"""White-box minimal-l2 adversarial examples on the base classifier f, projected onto its boundary.

Fig. 1 of Maho, Furon and Le Merrer (ICASSP 2022, section 3.3) starts from "the best" adversarial example
x_a of an image x_o against the undefended classifier f: a point on the boundary of f as close to x_o as a
white-box attack can find (the paper uses BP, Zhang, Avrithis, Furon and Amsaleg, TIFS 2020). It then
walks past x_a along ``x_a - x_o`` to see where the smoothed classifier g_sigma changes its answer.

This module finds such a point in two stages, batched over images:

1. a gradient attack with a decoupled direction and norm, in the spirit of DDN (Rony et al., *Decoupling
   Direction and Norm for Efficient Gradient-Based L2 Adversarial Attacks and Defenses*, CVPR 2019): the
   direction of the perturbation follows normalised gradient steps of the cross-entropy of the true label
   (step length cosine-annealed), while its norm eps shrinks by a factor ``1 - gamma`` after an iteration
   that ended adversarial and grows by ``1 + gamma`` otherwise; the perturbed image is kept in the pixel
   box [0, 1]; the smallest adversarial point seen is kept (the cross-entropy, which weighs every other
   class, finds closer boundaries on the digits model than the margin to the strongest other class);
2. a bisection of f on the segment from x_o to that point (:func:`~.bisection.bisect_segment`), which
   returns its adversarial end within an l2 tolerance of the boundary: x_a, on the boundary of f.

Everything is deterministic (no random draw) and every loop is capped. Both stages stay in the box: the
first clamps, the second moves on a segment between two points of the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from rs_repro import checks
from rs_repro.attacks.bisection import bisect_segment
from rs_repro.attacks.oracle import Oracle

__all__ = ["MinimalAdversarial", "minimal_l2"]


@dataclass
class MinimalAdversarial:
    """Result of :func:`minimal_l2` for B images.

    Attributes
    ----------
    x_adv : torch.Tensor, shape [B, C, H, W]
        Smallest adversarial point of the gradient stage (the original image where none was found).
    x_a : torch.Tensor, shape [B, C, H, W]
        Adversarial end of the final bisection on the segment x_o -> x_adv, within ``tol`` (l2) of the
        boundary of f (the original image where the attack failed).
    distance : torch.Tensor, shape [B], float64
        ``||x_a - x_o||_2`` (inf where the attack failed).
    success : torch.Tensor, shape [B], bool
        Whether the gradient stage found an adversarial point (it cannot where the gradient of the
        cross-entropy underflows to zero, on an image classified with an extreme logit margin).
    """

    x_adv: torch.Tensor
    x_a: torch.Tensor
    distance: torch.Tensor
    success: torch.Tensor


def _norms(z: torch.Tensor) -> torch.Tensor:
    """l2 norm of each row of ``z`` [B, ...], shape [B]."""
    return z.flatten(1).norm(dim=1)


def _rows(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` [B] viewed as [B, 1, 1, 1] to broadcast against images ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def minimal_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 200, step_size: float = 1.0,
               gamma: float = 0.05, init_norm: float = 1.0, tol: float = 1e-4,
               bisection_steps: int = 60) -> MinimalAdversarial:
    """Minimal-l2 untargeted adversarial examples of f, on its boundary (ICASSP 2022, Fig. 1's x_a).

    Parameters
    ----------
    model : torch.nn.Module
        f: images [m, C, H, W] in [0, 1] -> logits [m, K], in eval mode, differentiable in its input.
    x : torch.Tensor, shape [B, C, H, W]
        Images x_o in [0, 1], each correctly classified (f(x_o) = y).
    y : torch.Tensor, shape [B], int64
        Their labels; a point is adversarial when the argmax of its logits differs from its label.
    steps : int
        Iterations of the gradient stage (>= 1).
    step_size : float
        Length of the first normalised gradient step (> 0), annealed to 0 with a cosine over ``steps``.
    gamma : float
        Relative change of the norm eps per iteration, in (0, 1).
    init_norm : float
        Initial norm eps (> 0); capped by the largest perturbation the box allows.
    tol : float
        l2 tolerance of the final bisection (> 0): x_a is adversarial and at most ``tol`` from the boundary
        of f along the segment.
    bisection_steps : int
        Cap on the probes of the final bisection (>= 1).

    Returns
    -------
    MinimalAdversarial

    Raises
    ------
    TypeError
        ``x`` not a tensor.
    ValueError
        A parameter out of range; ``x`` not a 4-D floating tensor in [0, 1]; ``y`` not an int64 [B]
        tensor; an image that f already misclassifies.
    """
    steps = checks.integer("steps", steps, 1)
    bisection_steps = checks.integer("bisection_steps", bisection_steps, 1)
    step_size = checks.real("step_size", step_size, 0)
    gamma = checks.real("gamma", gamma, 0, 1)
    init_norm = checks.real("init_norm", init_norm, 0)
    tol = checks.real("tol", tol, 0)
    checks.images("x", x, 4, "[B, C, H, W]", pixel_box=True)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (x.shape[0],):
        raise ValueError(f"y must be an int64 tensor of shape [{x.shape[0]}], got "
                         f"{(y.dtype, tuple(y.shape)) if isinstance(y, torch.Tensor) else type(y).__name__}")
    x = x.detach()
    y = y.to(x.device)
    with torch.inference_mode():
        wrong = model(x).argmax(1) != y
    if bool(wrong.any()):
        raise ValueError(f"x must be correctly classified by the model; images {wrong.nonzero().flatten().tolist()} "
                         "are not (they need no attack)")

    batch = x.shape[0]
    largest = _norms(torch.maximum(x, 1 - x))  # the farthest point of the box from each image
    eps = torch.minimum(torch.full_like(largest, init_norm), largest)
    delta = torch.zeros_like(x)
    best = x.clone()
    best_norm = torch.full((batch,), math.inf, dtype=x.dtype, device=x.device)
    for k in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            logits = model(x + delta)
            loss = F.cross_entropy(logits, y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, delta)
        delta = delta.detach()
        adversarial = logits.detach().argmax(1) != y
        norm = _norms(delta)
        better = adversarial & (norm < best_norm)
        best = torch.where(_rows(better, x), x + delta, best)
        best_norm = torch.where(better, norm, best_norm)
        eps = torch.minimum(torch.where(adversarial, eps * (1 - gamma), eps * (1 + gamma)), largest)
        alpha = step_size * (1 + math.cos(math.pi * k / steps)) / 2
        delta = delta + alpha * grad / _rows(_norms(grad).clamp_min(torch.finfo(x.dtype).tiny), x)
        delta = delta * _rows(eps / _norms(delta).clamp_min(torch.finfo(x.dtype).tiny), x)
        delta = (x + delta).clamp(0, 1) - x
    with torch.inference_mode():  # the last iterate was never evaluated inside the loop
        adversarial = model(x + delta).argmax(1) != y
    norm = _norms(delta)
    better = adversarial & (norm < best_norm)
    best = torch.where(_rows(better, x), x + delta, best)
    best_norm = torch.where(better, norm, best_norm)

    success = torch.isfinite(best_norm)
    x_a = x.clone()
    rows = success.nonzero().squeeze(1)
    if len(rows):
        oracle = Oracle(model, max_queries=bisection_steps)
        oracle.start(x[rows], y[rows])
        found = bisect_segment(oracle, x[rows], best[rows], torch.arange(len(rows)), tol=tol,
                               max_steps=bisection_steps)
        x_a[rows] = found.x.to(x.dtype)
    distance = torch.where(success.cpu(), _norms(x_a - x).double().cpu(), torch.tensor(math.inf, dtype=torch.float64))
    return MinimalAdversarial(x_adv=best, x_a=x_a, distance=distance, success=success.cpu())
