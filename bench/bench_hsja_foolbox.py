"""Benchmark: our HSJA (rs_repro.attacks.hsja) against Foolbox 3.3.4's HopSkipJumpAttack, side by side.

Workload: the digits "standard" model of the default profile, the first ``--images`` correctly classified
images of a seeded draw of the digits test split, a budget of ``--budget`` queries per image, untargeted
l2, CPU. Ours runs on all images at once under :class:`rs_repro.attacks.Oracle` (which enforces the
budget). Foolbox sees the same model through a wrapper that counts the rows it is given (one row = one
query); every Foolbox call carries its whole batch, so its queries per image are rows / batch, its
initialisation (``LinearSearchBlendedUniformNoiseAttack``: uniform draws, then up to 51 blends), its
"is the start adversarial" check and its ``assert`` queries included.

Foolbox has no query budget (its issue #710) and its cost is fixed by ``steps`` (all images of a batch make
the same calls), so for each batch the largest ``steps`` whose count stays within the budget is found by
running it (a run with ``steps`` replays the start of a longer one) and kept; its actual count is reported.
Ours is then also read off its own query history at Foolbox's count, image by image (``Oracle.best_at``),
for a comparison at equal queries. Foolbox draws from the global torch RNG only: it is seeded inside
``torch.random.fork_rng``. The wrapper also keeps Foolbox's best adversarial query within the budget,
printed under the table next to the point Foolbox returns.

Foolbox is run twice by default: on the whole batch (its normal use) and one image at a time. Foolbox
3.3.4 normalises the estimated gradients by their norm over the whole batch, not per image
(``ep.norms.l2(atleast_kd(flatten(grad), grad.ndim))`` has no axis), so with B images every update is
shorter than HSJA's unit direction; one image at a time avoids that, at a large cost in time.

Timings are best-of-``--repeats`` wall times of whole attacks (for Foolbox: of its chosen ``steps``,
summed over its batches), with ``--threads`` torch threads (1 by default: on a shared 2-core machine,
2 threads make small tensor operations erratic).

Requires Foolbox, a benchmark-only dependency: ``.venv/bin/pip install foolbox==3.3.4``. Without it the
script prints that line and exits 0 (``make bench`` runs every benchmark).

Run as ``.venv/bin/python bench/bench_hsja_foolbox.py [--images 20 --budget 1000 --repeats 3 --threads 1
--seed 0 --foolbox-batch 0 1]``.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from rs_repro.attacks import AttackResult, Oracle
from rs_repro.attacks.hsja import hsja
from rs_repro.data import load_dataset
from rs_repro.models import trained_model

INSTALL = ".venv/bin/pip install foolbox==3.3.4"


class Counting(nn.Module):
    """Wraps a model: counts the rows it sees and keeps, per image, the best adversarial row (l2).

    Every call must carry the whole batch of B images in order (true of Foolbox's HSJA); a row counts
    for the best only while its image has made at most ``budget`` queries.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: int) -> None:
        super().__init__()
        self.model, self.x, self.y, self.budget = model, x, y, budget
        self.rows = 0
        self.best = torch.full((len(x),), math.inf, dtype=torch.float64)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        if len(xs) != len(self.x):
            raise RuntimeError(f"expected calls of {len(self.x)} rows, got {len(xs)}")
        self.rows += len(xs)
        logits = self.model(xs)
        if self.rows // len(self.x) <= self.budget:
            l2 = (xs.detach() - self.x).flatten(1).double().norm(dim=1)
            adversarial = logits.argmax(1) != self.y
            self.best = torch.where(adversarial, torch.minimum(self.best, l2), self.best)
        return logits


def run_foolbox(fb, model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, budget: int,
                seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One Foolbox HSJA run: l2 of the returned points, best queried adversarial l2, queries per image."""
    counter = Counting(model, x, y, budget)
    fmodel = fb.PyTorchModel(counter.eval(), bounds=(0, 1))
    attack = fb.attacks.HopSkipJumpAttack(steps=steps)
    with torch.random.fork_rng(), torch.inference_mode():
        torch.manual_seed(seed)
        x_adv = attack.run(fmodel, x, fb.criteria.Misclassification(y))
        if not (model(x_adv).argmax(1) != y).all():
            raise RuntimeError("Foolbox returned a non-adversarial point")
    l2 = (x_adv - x).flatten(1).double().norm(dim=1)
    return l2, counter.best, counter.rows // len(x)


def calibrate_steps(fb, model: nn.Module, x: torch.Tensor, y: torch.Tensor, budget: int, seed: int,
                    guess: int = 5) -> int:
    """The largest Foolbox ``steps`` whose queries per image stay within ``budget`` (0 if even 1 exceeds).

    Foolbox's count grows with ``steps`` and a run with ``steps`` replays the first ``steps`` iterations
    of a longer one (same seed), so a walk from ``guess`` finds it.
    """
    def fits(steps: int) -> bool:
        return run_foolbox(fb, model, x, y, steps, budget, seed)[2] <= budget

    steps = max(1, guess)
    if fits(steps):
        while steps < 64 and fits(steps + 1):
            steps += 1
        return steps
    while steps > 1 and not fits(steps - 1):
        steps -= 1
    return steps - 1


def _median(values: torch.Tensor) -> float:
    """The median (mean of the two middle values for an even count, unlike ``torch.median``)."""
    return float(np.median(values.numpy()))


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``fn`` over ``repeats`` calls."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="correctly classified test images")
    parser.add_argument("--budget", type=int, default=1000, help="queries per image")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image draw and of both attacks")
    parser.add_argument("--foolbox-batch", type=int, nargs="+", default=[0, 1],
                        help="images per Foolbox call, one run per value (0: all at once; 1: one at a time)")
    args = parser.parse_args(argv)
    try:
        import foolbox as fb
    except ImportError:
        print(f"skipped: Foolbox is not installed; it is a benchmark-only dependency: {INSTALL}")
        return
    torch.set_num_threads(args.threads)

    model, _ = trained_model("digits", "standard", seed=0, progress=False)
    model.eval()
    data = load_dataset("digits", "test", n=min(450, 3 * args.images), seed=args.seed)
    with torch.inference_mode():
        correct = model(data.x).argmax(1) == data.y
    x, y = data.x[correct][:args.images].contiguous(), data.y[correct][:args.images].contiguous()
    if len(x) < args.images:
        raise SystemExit(f"only {len(x)} correctly classified images in the draw, asked for {args.images}")

    oracle = Oracle(model, max_queries=args.budget)  # ours: the budget is the oracle's

    def ours() -> AttackResult:
        return hsja(oracle, x, y, seed=args.seed)

    result = ours()
    ours_time = best_time(ours, args.repeats)
    rows = [("ours: `hsja`, batch of all images (best query)", "64 (budget binds)",
             result.queries.tolist(), result.l2, f"{ours_time:.3f}")]
    ratios = []
    for size in args.foolbox_batch:
        size = size or len(x)
        l2, best, queries, steps, seconds = [], [], [], [], 0.0
        for start in range(0, len(x), size):
            xs, ys = x[start:start + size], y[start:start + size]
            guess = steps[-1] if steps else 5
            chosen = calibrate_steps(fb, model, xs, ys, args.budget, args.seed, guess=guess)
            if chosen == 0:
                raise SystemExit(f"Foolbox needs more than {args.budget} queries per image for a single step")
            found, best_query, count = run_foolbox(fb, model, xs, ys, chosen, args.budget, args.seed)
            seconds += best_time(lambda xs=xs, ys=ys, chosen=chosen: run_foolbox(
                fb, model, xs, ys, chosen, args.budget, args.seed), args.repeats)
            l2.append(found)
            best.append(best_query)
            queries += [count] * len(xs)
            steps.append(chosen)
        theirs = torch.cat(l2)
        # Ours read off the same run's history at Foolbox's query count, image by image.
        budgets = sorted(set(queries))
        curve = oracle.best_at(budgets)
        at_counts = torch.from_numpy(curve[np.arange(len(x)), [budgets.index(q) for q in queries]])
        steps_text = str(steps[0]) if len(set(steps)) == 1 else f"{min(steps)}-{max(steps)}"
        rows.append((f"ours, read at the counts of Foolbox batch {size}", "", queries, at_counts, "same run"))
        rows.append((f"Foolbox 3.3.4 `HopSkipJumpAttack`, batch {size}", steps_text, queries, theirs,
                     f"{seconds:.3f}"))
        best_of_queries = torch.cat(best)
        ratios.append((size, best_of_queries, _median(result.l2) / _median(theirs),
                       _median(at_counts) / _median(theirs), ours_time / seconds,
                       int((at_counts < theirs).sum())))

    print(f"digits standard model, {len(x)} correctly classified test images (seed {args.seed}), budget "
          f"{args.budget} queries per image, untargeted l2, {args.threads} torch threads, best of "
          f"{args.repeats} timings; torch {torch.__version__}, foolbox {fb.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print()
    print("| run | iterations | queries per image (min-max) | median l2 | mean l2 | success | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, steps_text, queries, l2, seconds in rows:
        print(f"| {name} | {steps_text} | {min(queries)}-{max(queries)} | {_median(l2):.4f} | "
              f"{l2.mean().item():.4f} | {int(torch.isfinite(l2).sum())}/{len(l2)} | {seconds} |")
    print()
    for size, best_of_queries, full, equal, time_ratio, wins in ratios:
        print(f"Foolbox batch {size}, best of its queries (not what it returns): median l2 "
              f"{_median(best_of_queries):.4f}, mean {best_of_queries.mean().item():.4f}")
        print(f"vs Foolbox batch {size}: median l2 ours / Foolbox = {full:.3f} at the full budget, "
              f"{equal:.3f} at Foolbox's own query counts (ours smaller on {wins}/{len(x)} images); "
              f"wall time ours / Foolbox = "
              f"{time_ratio:.3f}")


if __name__ == "__main__":
    sys.exit(main())
