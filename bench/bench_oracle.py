"""Benchmark: throughput of the smoothed query oracle against the forward-pass floor.

Workload: 100 digits test images, the default standard model, ``--calls`` oracle calls each asking one query
per image (100 rows per call, as an attack's batched step does), at n = 1, 10 and 100 micro-decisions per
query, the majority rule and the paper's rule at P_a = 0.8. The query points are the images moved by a little
noise, where most votes are clear: a vote stops drawing once its answer is settled
(:meth:`rs_repro.smoothing.Smooth.decide`), so a query costs fewer than n forward passes.

The floor is n base-model forward passes per query (100 * n per call) on a pre-built batch of the same size,
given to the model in slices of :data:`rs_repro.smoothing.CPU_FORWARD_ROWS` rows as the oracle does;
a second reference adds the 100 * n * d Gaussian numbers a full vote draws. Two ratios per row: queries per
second against the floor's (what an attack sees; above 1 where the votes stop early), and forward passes per
second against the floor's (the oracle's overhead per forward pass it spends: noise, bookkeeping, the rounds of
the curtailed vote). Targets (issue 23): queries at least 0.8 of the floor at n = 10 and 0.6 at n = 1.
Best of ``--repeats``, interleaved.

All are measured twice in one run: with glibc's default malloc, then with the thresholds the book's kernels
use (:mod:`rs_repro.pipeline.runtime`), which keep the forward passes' freed activations in the process.

Measured on the book's threads per work unit (:data:`rs_repro.pipeline.runtime.COMPUTE_THREADS`, one): with
two threads, the thread pool's wake-up after each Python step makes small forward passes slower than in the
floor's tight loop, which is not what a work unit sees.

Run as ``.venv/bin/python bench/bench_oracle.py [--images 100 --calls 50 --repeats 9 --threads 1]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from bench_vote import best_times

from rs_repro import data
from rs_repro.attacks import smoothed_oracle
from rs_repro.models import trained_model
from rs_repro.pipeline import runtime
from rs_repro.smoothing import CPU_FORWARD_ROWS, Smooth

#: The oracles measured: (n, P_a of the accelerated rule or None for the majority).
CASES = ((1, None), (10, None), (10, 0.8), (100, 0.8))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="images (rows per oracle call)")
    parser.add_argument("--calls", type=int, default=50, help="oracle calls per measurement")
    parser.add_argument("--sigma", type=float, default=0.35, help="smoothing noise")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats (best is reported)")
    parser.add_argument("--threads", type=int, default=runtime.COMPUTE_THREADS,
                        help="torch.set_num_threads (default: the book's, one thread per work unit)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, _ = trained_model("digits", "standard", seed=0, progress=False)
    test = data.load_dataset("digits", "test", n=args.images, seed=0)
    rows = test.x + 0.05 * torch.randn(test.x.shape, generator=torch.Generator().manual_seed(1))
    queries = args.images * args.calls
    settings = {"glibc defaults": None, "book kernels (rs_repro.pipeline.runtime)": runtime.keep_freed_memory}
    results, spent = {}, {}
    for setting, apply in settings.items():
        if apply is not None and not apply():
            print(f"skipped '{setting}': this C library has no mallopt")
            continue
        functions, spent = workload(model, test, rows, args)
        results[setting] = best_times(functions, args.repeats, lambda: None)
    print(f"{args.images} images per call, {args.calls} calls, sigma={args.sigma}, {args.threads} threads, "
          f"best of {args.repeats}")
    print()
    print("| malloc | measurement | seconds | queries/s | forward passes per query | queries/s to floor | "
          "forward passes/s to floor |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for setting, times in results.items():
        for n in sorted({n for n, _ in CASES}):
            base = times[f"forward passes, n={n} (floor)"]
            rows = [(f"forward passes, n={n} (floor)", n), (f"Gaussian draws + forward passes, n={n}", n)]
            rows += [(oracle_name(n, pa), spent[(n, pa)]) for case_n, pa in CASES if case_n == n]
            for name, passes in rows:
                print(f"| {setting} | {name} | {times[name]:.4f} | {queries / times[name]:,.0f} | {passes:.2f} | "
                      f"{base / times[name]:.3f} | {base / times[name] * passes / n:.3f} |")
    print()
    for setting, times in results.items():
        for n, pa in ((1, None), (10, None), (10, 0.8)):
            ratio = times[f"forward passes, n={n} (floor)"] / times[oracle_name(n, pa)]
            target = 0.6 if n == 1 else 0.8
            print(f"{oracle_name(n, pa)}, {setting}: {ratio:.2f} of the floor's queries per second "
                  f"(target >= {target}), {spent[(n, pa)]:.2f} forward passes per query")


def oracle_name(n: int, pa: float | None) -> str:
    """The row name of the oracle at n micro-decisions with the majority (``pa`` None) or the P_a rule."""
    return f"Oracle.is_adversarial, n={n}, {'majority' if pa is None else f'P_a={pa:g}'}"


def workload(model: torch.nn.Module, test: data.Dataset, rows: torch.Tensor,
             args: argparse.Namespace) -> tuple[dict[str, Callable[[], None]], dict[tuple[int, float | None], float]]:
    """The timed functions: per n, the floor and the floor plus the Gaussian draws a full vote needs (the
    same ``normal_`` calls into a reused buffer), and per case of :data:`CASES` the oracle; with the forward
    passes per query each oracle spends (from its books, on the same workload)."""
    images = torch.arange(args.images)
    measurements: dict[str, Callable[[], None]] = {}
    spent: dict[tuple[int, float | None], float] = {}
    for n in sorted({n for n, _ in CASES}):
        prebuilt = rows.repeat_interleave(n, 0).contiguous()

        def floor(prebuilt: torch.Tensor = prebuilt) -> None:
            with torch.inference_mode():
                for _ in range(args.calls):
                    for part in prebuilt.split(CPU_FORWARD_ROWS):
                        model(part)

        noisy = torch.empty_like(prebuilt)
        generator = torch.Generator().manual_seed(0)

        def draws(noisy: torch.Tensor = noisy, generator: torch.Generator = generator) -> None:
            with torch.inference_mode():
                for _ in range(args.calls):
                    for part in noisy.normal_(0.0, args.sigma, generator=generator).split(CPU_FORWARD_ROWS):
                        model(part)

        measurements[f"forward passes, n={n} (floor)"] = floor
        measurements[f"Gaussian draws + forward passes, n={n}"] = draws
    for n, pa in CASES:
        oracle = smoothed_oracle(Smooth(model, 10, args.sigma), n, pa, max_queries=10**9, seed=0)

        def ask(oracle=oracle) -> None:
            oracle.start(test.x, test.y)
            for _ in range(args.calls):
                oracle.is_adversarial(rows, images)

        ask()
        spent[(n, pa)] = oracle.forward_passes.sum().item() / (args.images * args.calls)
        measurements[oracle_name(n, pa)] = ask
    return measurements, spent

if __name__ == "__main__":
    main()
