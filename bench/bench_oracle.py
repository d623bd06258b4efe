"""Benchmark: throughput of the smoothed query oracle against the forward-pass floor.

Workload: 100 digits test images, the default standard model, ``--calls`` oracle calls each asking one query
per image (100 rows per call, as an attack's batched step does), at n = 1 and n = 10 micro-decisions per
query. The floor is the same number of base-model forward passes (100 * n per call) on a pre-built batch
of the same size; a second reference adds the 100 * n * d Gaussian numbers every smoothed query draws (on
the CPU a third of the floor for the digits model), the part of a query no bookkeeping can remove.
Target: at n = 10, at least half the floor's queries per second. Best of ``--repeats``, interleaved.

All are measured twice in one run: with glibc's default malloc, then with the thresholds the book's kernels
use (:mod:`rs_repro.pipeline.runtime`), which keep the forward passes' freed activations in the process.

Run as ``.venv/bin/python bench/bench_oracle.py [--images 100 --calls 50 --repeats 9 --threads 2]``.
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
from rs_repro.smoothing import Smooth


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="images (rows per oracle call)")
    parser.add_argument("--calls", type=int, default=50, help="oracle calls per measurement")
    parser.add_argument("--sigma", type=float, default=0.35, help="smoothing noise")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats (best is reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, _ = trained_model("digits", "standard", seed=0, progress=False)
    test = data.load_dataset("digits", "test", n=args.images, seed=0)
    rows = test.x + 0.05 * torch.randn(test.x.shape, generator=torch.Generator().manual_seed(1))
    queries = args.images * args.calls
    settings = {"glibc defaults": None, "book kernels (rs_repro.pipeline.runtime)": runtime.keep_freed_memory}
    results = {}
    for setting, apply in settings.items():
        if apply is not None and not apply():
            print(f"skipped '{setting}': this C library has no mallopt")
            continue
        results[setting] = best_times(workload(model, test, rows, args), args.repeats, lambda: None)
    print(f"{args.images} images per call, {args.calls} calls, sigma={args.sigma}, {args.threads} threads, "
          f"best of {args.repeats}")
    print()
    print("| malloc | measurement | seconds | queries/s | ratio of queries/s to floor |")
    print("|---|---|---:|---:|---:|")
    for setting, times in results.items():
        for n in (1, 10):
            base = times[f"forward passes, n={n} (floor)"]
            for name in (f"forward passes, n={n} (floor)", f"Gaussian draws + forward passes, n={n}",
                         f"Oracle.is_adversarial, n={n}"):
                print(f"| {setting} | {name} | {times[name]:.4f} | {queries / times[name]:,.0f} | "
                      f"{base / times[name]:.3f} |")
    print()
    for setting, times in results.items():
        ratio = times["forward passes, n=10 (floor)"] / times["Oracle.is_adversarial, n=10"]
        draws = times["Gaussian draws + forward passes, n=10"] / times["Oracle.is_adversarial, n=10"]
        print(f"oracle at n=10, {setting}: {ratio:.2f} of the floor's queries per second (target >= 0.5); "
              f"{draws:.2f} of the draws + forward passes")


def workload(model: torch.nn.Module, test: data.Dataset, rows: torch.Tensor,
             args: argparse.Namespace) -> dict[str, Callable[[], None]]:
    """The timed functions at n = 1 and n = 10: the floor, the floor plus the Gaussian draws every smoothed
    query needs (the same ``normal_`` calls into a reused buffer as :meth:`Smooth.counts`), and the oracle."""
    images = torch.arange(args.images)
    measurements = {}
    for n in (1, 10):
        oracle = smoothed_oracle(Smooth(model, 10, args.sigma, seed=0), n, max_queries=10**9)
        prebuilt = rows.repeat_interleave(n, 0).contiguous()

        def floor(prebuilt: torch.Tensor = prebuilt) -> None:
            with torch.inference_mode():
                for _ in range(args.calls):
                    model(prebuilt)

        noisy = torch.empty_like(prebuilt)
        generator = torch.Generator().manual_seed(0)

        def draws(noisy: torch.Tensor = noisy, generator: torch.Generator = generator) -> None:
            with torch.inference_mode():
                for _ in range(args.calls):
                    model(noisy.normal_(0.0, args.sigma, generator=generator))

        def ask(oracle=oracle) -> None:
            oracle.start(test.x, test.y)
            for _ in range(args.calls):
                oracle.is_adversarial(rows, images)

        measurements[f"forward passes, n={n} (floor)"] = floor
        measurements[f"Gaussian draws + forward passes, n={n}"] = draws
        measurements[f"Oracle.is_adversarial, n={n}"] = ask
    return measurements


if __name__ == "__main__":
    main()
